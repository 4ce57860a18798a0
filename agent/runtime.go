package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/patcher"
)

// KeyringVerifier verifies bundles against a keyring of trusted public
// keys, the agent's own: a server that was broken into cannot make agents
// load anything the keys did not sign.
type KeyringVerifier struct{ Keys *bundle.Keyring }

// Verify parses data as a bundle and checks its signature.
func (v KeyringVerifier) Verify(data []byte) (*api.BundleInfo, error) {
	b, err := bundle.Parse(data)
	if err != nil {
		return nil, err
	}
	if err := b.Verify(v.Keys); err != nil {
		return nil, err
	}
	m := b.Manifest()
	return &api.BundleInfo{Name: m.Name, KernelRelease: m.Kernel.Release, BuildID: m.Kernel.BuildID, Level: m.Level, Replace: m.Replace, CVEs: m.CVEs}, nil
}

// PatcherRuntime drives the host's real runtime (package patcher). Applied
// patches are persisted, so the boot service loads them again after a
// reboot whether or not the agent or the server is up.
type PatcherRuntime struct {
	RT      *patcher.Runtime
	Timeout time.Duration // transition timeout; 0: the runtime's default
	// LockWait is how long Apply and Revert wait for the host's lock while
	// another stent operation holds it before they give up with ErrBusy
	// (the agent tries again later, up to its BusyTimeout). Default 5s.
	LockWait time.Duration
}

func (p PatcherRuntime) Status(ctx context.Context) (*RuntimeStatus, error) {
	st, err := p.RT.Status(ctx)
	if err != nil {
		return nil, err
	}
	rs := &RuntimeStatus{Patches: []api.PatchState{}}
	if st.Kernel != nil {
		rs.KernelRelease, rs.BuildID, rs.BootID = st.Kernel.Release, st.Kernel.BuildID, st.Kernel.BootID
	}
	for _, ps := range st.Patches {
		s := api.PatchState{Name: ps.Name, Enabled: ps.Enabled, Transition: ps.Transition}
		if ps.Record != nil {
			s.Bundle = ps.Record.FileSHA256
			if ps.Record.Manifest != nil {
				s.Level = ps.Record.Manifest.Level
			}
		}
		rs.Patches = append(rs.Patches, s)
	}
	return rs, nil
}

func (p PatcherRuntime) Apply(ctx context.Context, path string) (string, error) {
	var res *patcher.ApplyResult
	err := p.boundLockWait(ctx, func(ctx context.Context, progress patcher.Progress) (err error) {
		res, err = p.RT.Apply(ctx, path, patcher.ApplyOptions{Persist: true, Timeout: p.Timeout, Progress: progress})
		return err
	})
	if err != nil {
		return "", err
	}
	if res == nil {
		return "", fmt.Errorf("apply %s: runtime returned no result", path)
	}
	return res.Name, nil
}

func (p PatcherRuntime) Revert(ctx context.Context, name string) error {
	return p.boundLockWait(ctx, func(ctx context.Context, progress patcher.Progress) error {
		return p.RT.Revert(ctx, name, patcher.RevertOptions{Timeout: p.Timeout, Progress: progress})
	})
}

// boundLockWait runs op, which takes the runtime's lock, waiting for it (the
// runtime waits for as long as ctx lasts) for at most LockWait. The runtime
// says "lock" in its progress while it waits and emits its next event only
// once it holds the lock; the wait is given up, by cancelling op's context,
// only if that next event has not come. The next event waits for the
// decision (mu), so a cancel lands before it. Apply checks its context
// after that event and before it loads anything. Revert does not check it
// before it disables the patch: a cancel in the microseconds between the
// lock and Revert's first event leaves what an agent stopped mid-revert
// leaves (the patch disabled, its module loaded), which the next try
// finishes.
func (p PatcherRuntime) boundLockWait(ctx context.Context, op func(context.Context, patcher.Progress) error) error {
	wait := p.LockWait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		timer   *time.Timer
		waiting bool // the runtime said it waits for the lock and has said nothing since
		gaveUp  bool
		holder  string // who holds the lock, when the runtime could tell
	)
	progress := func(e patcher.Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Step != "lock" {
			waiting = false
			return
		}
		if timer == nil {
			waiting, holder = true, e.Holder
			timer = time.AfterFunc(wait, func() {
				mu.Lock()
				defer mu.Unlock()
				if waiting {
					gaveUp = true
					cancel()
				}
			})
		}
	}
	err := op(octx, progress)
	mu.Lock()
	if timer != nil {
		timer.Stop()
	}
	gave, by := gaveUp, holder
	mu.Unlock()
	if gave && err != nil && ctx.Err() == nil && by != "" {
		return fmt.Errorf("%w: %s holds this host's live patch lock (waited %s for it)", ErrBusy, by, wait)
	}
	if gave && err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: another stent operation holds this host's live patch lock (waited %s for it; a person running stent apply or revert?)", ErrBusy, wait)
	}
	return err
}
