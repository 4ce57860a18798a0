package collect

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/klp"
	"github.com/stent-dev/stent/patcher"
)

// appliedPatches lists the live patches loaded in the kernel, from the
// runtime: klp.List reads /sys/kernel/livepatch, and the runtime's records
// (<runDir>/applied/NAME.json, written by patcher when it applies a bundle)
// carry each patch's manifest and so its CVEs. A loaded patch without a
// record or without a manifest is listed with Manifest false and no CVEs,
// and a warning: it fixes nothing Stent can vouch for.
func appliedPatches(root, runDir string) ([]inventory.LivePatch, []string, error) {
	loaded, err := klp.List(root)
	if errors.Is(err, klp.ErrNotSupported) {
		return nil, nil, nil // no livepatch support: nothing applied
	}
	if err != nil {
		return nil, nil, err
	}
	records, err := patcher.New(patcher.Config{Root: root, RunDir: runDir}).Records()
	if err != nil {
		return nil, nil, fmt.Errorf("live patch records: %w", err)
	}
	var out []inventory.LivePatch
	var warnings []string
	for _, p := range loaded {
		lp := inventory.LivePatch{Name: p.Name, Enabled: p.Enabled, Transition: p.Transition, CVEs: []string{}}
		rec := records[p.Name]
		switch {
		case rec == nil:
			warnings = append(warnings, fmt.Sprintf("live patch %s: no record in %s: its CVEs are unknown", p.Name, filepath.Join(runDir, "applied")))
		case rec.Manifest == nil:
			warnings = append(warnings, fmt.Sprintf("live patch %s: applied without a manifest: its CVEs are unknown", p.Name))
		default:
			lp.Manifest = true
			if cves := rec.CVEs(); cves != nil {
				lp.CVEs = append([]string(nil), cves...)
			}
			lp.KernelRelease = rec.Manifest.Kernel.Release
		}
		if rec != nil && !rec.AppliedAt.IsZero() {
			t := rec.AppliedAt.UTC()
			lp.AppliedAt = &t
		}
		out = append(out, lp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, warnings, nil
}
