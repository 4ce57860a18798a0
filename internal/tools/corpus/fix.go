package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/elfdiff"
)

// Fix is one entry of the corpus: corpus/<name>/fix.patch and its
// description corpus/<name>/fix.json.
type Fix struct {
	Name   string `json:"-"` // the folder's name
	Dir    string `json:"-"`
	Patch  string `json:"-"` // path of fix.patch
	Kernel string `json:"kernel"`
	// Origin says where the fix comes from: a Debian upload (the two
	// consecutive linux-source-6.1 versions it was split from) or an
	// upstream commit of the 6.1 stable branch.
	Origin   string   `json:"origin"`
	Upstream string   `json:"upstream,omitempty"` // upstream commit id, when there is one
	CVEs     []string `json:"cves,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	// Objects are the extra objects to rebuild (build.Options.Objects)
	// when the fix changes a header.
	Objects []string `json:"objects,omitempty"`
	// Expect is "build" (built, loaded, checked, reverted) or "refuse".
	Expect string `json:"expect"`

	// For "build": the functions the patch must replace (all of them,
	// no more), the image modules the fix patches or the check needs, and
	// the guest shell scripts. Setup prepares (mounts, loads), Check
	// exercises the patched code and exits 0 when it behaved, Teardown
	// undoes Setup so that the modules can be unloaded. Traced names the
	// replaced functions the check must reach (seen by the function tracer
	// in the patch module); default: at least one of Functions.
	Functions []string `json:"functions,omitempty"`
	Modules   []string `json:"modules,omitempty"`
	Setup     string   `json:"setup,omitempty"`
	Check     string   `json:"check,omitempty"`
	Teardown  string   `json:"teardown,omitempty"`
	Traced    []string `json:"traced,omitempty"`
	// FailsUnpatched says the check fails on the unpatched kernel: it is
	// run once after Setup and before the patch is applied, and must fail
	// there (the proof that it tests the fix, not only the code path).
	FailsUnpatched bool `json:"fails_unpatched,omitempty"`

	// For "refuse": the rule (elfdiff.Rule) and symbol of the refusal.
	Rule   string `json:"rule,omitempty"`
	Symbol string `json:"symbol,omitempty"`

	// Subset marks the fixes `make test` runs (TestCorpusSubset).
	Subset bool `json:"subset,omitempty"`
	// Cumulative marks the fixes -cumulative combines into one cumulative
	// patch (built-in fixes of one kernel).
	Cumulative bool `json:"cumulative,omitempty"`
	// Known is set for a fix Stent cannot yet do what Expect says: the
	// reason, reported instead of a failure.
	Known string `json:"known_failure,omitempty"`
}

var reFixName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// loadCorpus reads every corpus/<name>/fix.json under dir, sorted by name.
func loadCorpus(dir string) ([]*Fix, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	var fixes []*Fix
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		f, err := loadFix(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		fixes = append(fixes, f)
	}
	if len(fixes) == 0 {
		return nil, fmt.Errorf("corpus: no fixes under %s (want <name>/fix.json and <name>/fix.patch)", dir)
	}
	sort.Slice(fixes, func(i, j int) bool { return fixes[i].Name < fixes[j].Name })
	return fixes, nil
}

func loadFix(dir string) (*Fix, error) {
	name := filepath.Base(dir)
	js := filepath.Join(dir, "fix.json")
	data, err := os.ReadFile(js)
	if err != nil {
		return nil, fmt.Errorf("corpus fix %s: %w", name, err)
	}
	f := &Fix{}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		return nil, fmt.Errorf("%s: %w", js, err)
	}
	f.Name, f.Dir, f.Patch = name, dir, filepath.Join(dir, "fix.patch")
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", js, err)
	}
	p, err := os.ReadFile(f.Patch)
	if err != nil {
		return nil, fmt.Errorf("corpus fix %s: %w", name, err)
	}
	if _, err := build.ParsePatch(p); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Patch, err)
	}
	return f, nil
}

func (f *Fix) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !reFixName.MatchString(f.Name) {
		bad("folder name %q: use lower-case letters, digits, - and _", f.Name)
	}
	if f.Kernel == "" {
		bad("kernel: required (the release, e.g. 6.1.0-56-amd64)")
	}
	if f.Origin == "" {
		bad("origin: required (the Debian upload or upstream commit the fix comes from)")
	}
	switch f.Expect {
	case "build":
		if len(f.Functions) == 0 {
			bad("functions: required for expect build (the functions the patch replaces)")
		}
		if f.Check == "" {
			bad("check: required for expect build (a guest shell script exercising the patched code)")
		}
		if f.Rule != "" || f.Symbol != "" {
			bad("rule, symbol: only for expect refuse")
		}
	case "refuse":
		if f.Rule == "" || f.Symbol == "" {
			bad("rule and symbol: required for expect refuse (the elfdiff rule and the symbol it names)")
		}
		if f.Check != "" || len(f.Functions) > 0 {
			bad("check, functions: only for expect build")
		}
	default:
		bad("expect: %q, want build or refuse", f.Expect)
	}
	return errors.Join(errs...)
}

// moduleName is the livepatch module's name for the fix.
func (f *Fix) moduleName() string {
	return "stent_c_" + strings.NewReplacer("-", "_").Replace(f.Name)
}

// outcome is what happened to one fix.
type outcome struct {
	Fix       *Fix
	Built     bool     // built (or refused) as expected
	Loaded    bool     // applied, checked and reverted in the guest
	Refused   bool     // refused as expected
	Oops      bool     // an oops or WARN in the guest's log during its run
	BuildTime float64  // seconds
	Funcs     []string // replaced functions
	Refusal   *elfdiff.Refusal
	Err       string   // why it failed
	Unpatched bool     // the check failed before the patch, as fails_unpatched says
	Steps     []string // what the guest did, in order
}

func (o *outcome) ok() bool {
	if o.Fix.Expect == "refuse" {
		return o.Refused
	}
	return o.Built && o.Loaded && !o.Oops
}
