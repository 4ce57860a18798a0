// Package fleetsim runs simulated hosts: the real agent code (package
// agent) over a simulated kernel runtime, thousands to a process, against
// a real stent-server on loopback. Tests use it to check rollouts end to
// end at scale; the fleet benchmark (make bench-fleet) uses it to measure.
package fleetsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
)

// Runtime is a simulated live patch runtime: a kernel release and a list of
// loaded patches, with the delays and failures a test asks for. Tests change
// those settings while agents run, so they are set through methods that
// take the lock.
type Runtime struct {
	mu      sync.Mutex
	kernel  string
	buildID string
	bootID  string
	patches []api.PatchState
	applies map[string]int
	reverts map[string]int
	// applyDelay is how long an apply takes (the transition).
	applyDelay time.Duration
	// fail, when set, decides whether an apply of the named patch fails.
	fail func(name string) error
	// afterApply, when set, runs once a patch is loaded, before Apply
	// returns (tests stop the agent there).
	afterApply func(ctx context.Context, name string)
	// lockHolder, when set, is the other stent operation that holds the
	// host's lock: Apply and Revert answer agent.ErrBusy, as
	// agent.PatcherRuntime does once its LockWait is over.
	lockHolder string
}

// NewRuntime returns a runtime running kernel with no patches.
func NewRuntime(kernel string) *Runtime {
	return &Runtime{kernel: kernel, bootID: randHex(16), applies: map[string]int{}, reverts: map[string]int{}}
}

var _ agent.Runtime = (*Runtime)(nil)

// SetApplyDelay sets how long an apply takes (the transition).
func (r *Runtime) SetApplyDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applyDelay = d
}

// SetFail sets what decides whether an apply of the named patch fails, after
// the apply delay; nil: applies succeed.
func (r *Runtime) SetFail(fail func(name string) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fail
}

// SetAfterApply sets a function run once a patch is loaded, before Apply
// returns, without the runtime's lock held; nil: none.
func (r *Runtime) SetAfterApply(f func(ctx context.Context, name string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.afterApply = f
}

// SetLockHeld simulates another stent operation (a person running stent
// apply, say) holding the host's lock for as long as holder is not empty:
// Apply and Revert return an error wrapping agent.ErrBusy that names it.
func (r *Runtime) SetLockHeld(holder string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lockHolder = holder
}

// busy returns the error of a runtime whose lock another operation holds,
// or nil. Called with r.mu held.
func (r *Runtime) busy() error {
	if r.lockHolder == "" {
		return nil
	}
	return fmt.Errorf("%w: another stent operation (%s) holds this host's live patch lock", agent.ErrBusy, r.lockHolder)
}

func (r *Runtime) Status(ctx context.Context) (*agent.RuntimeStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &agent.RuntimeStatus{KernelRelease: r.kernel, BuildID: r.buildID, BootID: r.bootID, Patches: append([]api.PatchState{}, r.patches...)}, nil
}

// Apply loads the bundle at path: parsed for its manifest (the agent
// verified it already), then "transitioned" for the apply delay. A cumulative
// patch replaces every other one.
func (r *Runtime) Apply(ctx context.Context, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	b, err := bundle.Parse(data)
	if err != nil {
		return "", err
	}
	m := b.Manifest()
	r.mu.Lock()
	kernel, delay, busy := r.kernel, r.applyDelay, r.busy()
	r.mu.Unlock()
	if busy != nil {
		return "", busy
	}
	if m.Kernel.Release != kernel {
		return "", fmt.Errorf("bundle %s targets kernel %s but this kernel is %s", m.Name, m.Kernel.Release, kernel)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
	r.mu.Lock()
	fail := r.fail // read after the delay: a test may change it meanwhile
	r.mu.Unlock()
	if fail != nil {
		if err := fail(m.Name); err != nil {
			return "", err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applies[m.Name]++
	kept := r.patches[:0]
	for _, p := range r.patches {
		if p.Name != m.Name && !m.Replace {
			kept = append(kept, p)
		}
	}
	// The agent names downloads after their sha256.
	sha := strings.TrimSuffix(filepath.Base(path), ".stb")
	r.patches = append(kept, api.PatchState{Name: m.Name, Level: m.Level, Bundle: sha, Enabled: true})
	sort.Slice(r.patches, func(i, j int) bool { return r.patches[i].Name < r.patches[j].Name })
	after := r.afterApply
	r.mu.Unlock()
	if after != nil {
		after(ctx, m.Name)
	}
	r.mu.Lock()
	return m.Name, nil
}

func (r *Runtime) Revert(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.busy(); err != nil {
		return err
	}
	for i, p := range r.patches {
		if p.Name == name {
			r.patches = append(r.patches[:i], r.patches[i+1:]...)
			r.reverts[name]++
			return nil
		}
	}
	return fmt.Errorf("patch %s is not loaded", name)
}

// Applies counts successful applies of the named patch.
func (r *Runtime) Applies(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applies[name]
}

// Reverts counts reverts of the named patch.
func (r *Runtime) Reverts(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reverts[name]
}

// Loaded reports whether the named patch is loaded and enabled.
func (r *Runtime) Loaded(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.patches {
		if p.Name == name {
			return p.Enabled
		}
	}
	return false
}

// SetPatch puts p in the runtime as it is, replacing a patch of the same
// name: tests use it for a patch loaded by hand or one left in transition.
// A zero Name removes nothing and adds nothing.
func (r *Runtime) SetPatch(p api.PatchState) {
	if p.Name == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.patches[:0]
	for _, q := range r.patches {
		if q.Name != p.Name {
			kept = append(kept, q)
		}
	}
	r.patches = append(kept, p)
	sort.Slice(r.patches, func(i, j int) bool { return r.patches[i].Name < r.patches[j].Name })
}

// Reboot simulates a reboot: a new boot id, and the patches gone unless
// keep says the boot service loads them again (persisted patches).
func (r *Runtime) Reboot(keep bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bootID = randHex(16)
	if !keep {
		r.patches = nil
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// MakeBundle builds a signed bundle for tests and benchmarks: a manifest
// for name/kernel/level and a stand-in module of moduleSize bytes (the
// simulated runtime does not load it).
func MakeBundle(key ed25519.PrivateKey, name, kernel string, level int64, replace bool, moduleSize int) ([]byte, error) {
	module := make([]byte, max(moduleSize, 64))
	copy(module, "\x7fELF simulated livepatch module "+name)
	for i := 40; i < len(module); i++ {
		module[i] = byte(i * 7)
	}
	m := &bundle.Manifest{
		FormatVersion: bundle.FormatVersion,
		Name:          name,
		Kernel:        bundle.Kernel{Release: kernel},
		Level:         level,
		Replace:       replace,
		CVEs:          []string{"CVE-2024-1086"},
		Functions:     []bundle.Function{{Object: "vmlinux", Name: "nft_verdict_init"}},
		Description:   "simulated live patch " + name,
		Created:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	var buf writerBuf
	if err := bundle.Create(&buf, m, module, key); err != nil {
		return nil, err
	}
	return buf.b, nil
}

type writerBuf struct{ b []byte }

func (w *writerBuf) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
