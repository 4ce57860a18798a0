package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// appliedManifest is the part of an applied bundle's manifest read here.
type appliedManifest struct {
	Name   string   `json:"name"`
	CVEs   []string `json:"cves"`
	Kernel struct {
		Release string `json:"release"`
	} `json:"kernel"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// appliedPatches lists the live patches loaded in the kernel
// (/sys/kernel/livepatch/NAME/enabled and .../transition) with the CVEs
// from the manifests the runtime keeps in <runDir>/applied/NAME.json.
//
// This is the one place to swap for the runtime's own API (packages klp and
// patcher) once it lands. A patch without a manifest is listed with
// Manifest false and no CVEs, and a warning: it fixes nothing Stent can
// vouch for.
func appliedPatches(root, runDir string) ([]LivePatch, []string, error) {
	dir := filepath.Join(root, "sys/kernel/livepatch")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil // no livepatch support: nothing applied
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list live patches: %w", err)
	}
	var out []LivePatch
	var warnings []string
	for _, e := range ents {
		name := e.Name()
		enabled, err := os.ReadFile(filepath.Join(dir, name, "enabled"))
		if err != nil {
			continue // not a patch directory
		}
		lp := LivePatch{Name: name, Enabled: strings.TrimSpace(string(enabled)) == "1", CVEs: []string{}}
		if b, err := os.ReadFile(filepath.Join(dir, name, "transition")); err == nil {
			lp.Transition = strings.TrimSpace(string(b)) == "1"
		}
		mpath := filepath.Join(root, runDir, "applied", name+".json")
		data, err := os.ReadFile(mpath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			warnings = append(warnings, fmt.Sprintf("live patch %s: no manifest at %s: its CVEs are unknown", name, filepath.Join(runDir, "applied", name+".json")))
		case err != nil:
			return nil, nil, fmt.Errorf("live patch %s: %w", name, err)
		default:
			var m appliedManifest
			if err := json.Unmarshal(data, &m); err != nil {
				return nil, nil, fmt.Errorf("live patch %s: manifest %s: %w", name, mpath, err)
			}
			if m.Name != "" && m.Name != name {
				return nil, nil, fmt.Errorf("live patch %s: manifest %s is for %q", name, mpath, m.Name)
			}
			lp.Manifest = true
			if m.CVEs != nil {
				lp.CVEs = m.CVEs
			}
			lp.KernelRelease = m.Kernel.Release
			lp.AppliedAt = m.AppliedAt
		}
		out = append(out, lp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, warnings, nil
}
