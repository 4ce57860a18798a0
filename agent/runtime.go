package agent

import (
	"context"
	"fmt"
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
	res, err := p.RT.Apply(ctx, path, patcher.ApplyOptions{Persist: true, Timeout: p.Timeout})
	if err != nil {
		return "", err
	}
	if res == nil {
		return "", fmt.Errorf("apply %s: runtime returned no result", path)
	}
	return res.Name, nil
}

func (p PatcherRuntime) Revert(ctx context.Context, name string) error {
	return p.RT.Revert(ctx, name, patcher.RevertOptions{Timeout: p.Timeout})
}
