package patcher

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stent-dev/stent/bundle"
)

// Record is what the runtime remembers, for the current boot, about a
// patch it applied: kept in RunDir/applied/NAME.json so that status, uname
// and the agent know the manifest of what the kernel runs.
type Record struct {
	Name         string           `json:"name"`
	Source       string           `json:"source"`        // the file given to apply
	FileSHA256   string           `json:"file_sha256"`   // of that file
	ModuleSHA256 string           `json:"module_sha256"` // of the module bytes loaded
	Signed       bool             `json:"signed"`        // came from a verified bundle
	KeyID        string           `json:"key_id,omitempty"`
	Manifest     *bundle.Manifest `json:"manifest,omitempty"`
	AppliedAt    time.Time        `json:"applied_at"`
	Forced       bool             `json:"forced,omitempty"`
	Persisted    bool             `json:"persisted,omitempty"`
	BootID       string           `json:"boot_id,omitempty"`
	// Applying is set while stent waits for the patch's first transition.
	Applying bool `json:"applying,omitempty"`
}

// CVEs returns the CVE ids the record's manifest says the patch fixes.
func (r *Record) CVEs() []string {
	if r.Manifest == nil {
		return nil
	}
	return r.Manifest.CVEs
}

func (rt *Runtime) recordPath(name string) string {
	return filepath.Join(rt.cfg.RunDir, "applied", name+".json")
}

func (rt *Runtime) saveRecord(r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(rt.recordPath(r.Name), b, 0o644)
}

func (rt *Runtime) dropRecord(name string) {
	if checkName(name) != nil {
		return
	}
	os.Remove(rt.recordPath(name))
}

// Records returns the records of patches applied on this boot, by name.
// Records whose patch is gone from the kernel are still returned; callers
// join them with what sysfs says.
func (rt *Runtime) Records() (map[string]*Record, error) {
	dir := filepath.Join(rt.cfg.RunDir, "applied")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*Record{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]*Record{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil || checkName(r.Name) != nil || r.Name+".json" != e.Name() {
			// One damaged record must not hide the others.
			rt.log.Warn("skipping unreadable record", "file", filepath.Join(dir, e.Name()), "err", err)
			continue
		}
		out[r.Name] = &r
	}
	return out, nil
}
