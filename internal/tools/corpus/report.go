package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// record is one fix's result as docs/corpus.json keeps it; docs/corpus.md
// is rendered from these. A run of some fixes only (names, -subset)
// replaces their records and keeps the others, with the time of the run
// that produced each.
type record struct {
	Name      string   `json:"name"`
	Kernel    string   `json:"kernel"`
	Origin    string   `json:"origin"`
	CVEs      []string `json:"cves,omitempty"`
	Expect    string   `json:"expect"`
	OK        bool     `json:"ok"`
	Oops      bool     `json:"oops"`
	Modules   bool     `json:"modules,omitempty"`         // checked with the modules loaded before and after
	Unpatched bool     `json:"fails_unpatched,omitempty"` // the check failed on the unpatched kernel
	BuildTime float64  `json:"build_seconds"`
	Funcs     []string `json:"functions,omitempty"`
	Refusal   string   `json:"refusal,omitempty"`
	Err       string   `json:"error,omitempty"`
	Known     string   `json:"known_failure,omitempty"`
	Run       string   `json:"run"` // UTC time of the run
}

func newRecord(o *outcome, run time.Time) record {
	f := o.Fix
	r := record{Name: f.Name, Kernel: f.Kernel, Origin: f.Origin, CVEs: f.CVEs, Expect: f.Expect, OK: o.ok(), Oops: o.Oops,
		Modules: len(f.Modules) > 0, Unpatched: o.Unpatched, BuildTime: o.BuildTime, Funcs: o.Funcs, Err: o.Err, Known: f.Known, Run: run.UTC().Format("2006-01-02 15:04")}
	if o.Refusal != nil {
		r.Refusal = fmt.Sprintf("`%s` %s: %s", o.Refusal.Rule, o.Refusal.Symbol, o.Refusal.Suggest)
	}
	return r
}

func summarize(recs []record) string {
	var n, m, k, l, o int
	for _, r := range recs {
		if r.Expect == "build" {
			m++
			if r.OK {
				n++
			}
		} else {
			l++
			if r.OK {
				k++
			}
		}
		if r.Oops {
			o++
		}
	}
	return fmt.Sprintf("corpus: %d/%d built, loaded and checked, %d/%d refused, %d oopses", n, m, k, l, o)
}

// writeReport merges the run's records into the JSON beside path (same
// name, .json) and renders path from all of them, both written atomically.
// all are the fixes of the corpus: records of fixes no longer there go.
func writeReport(path string, res *corpusResult, all []*Fix) error {
	jsonPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".json"
	byName := map[string]record{}
	if b, err := os.ReadFile(jsonPath); err == nil {
		var old []record
		if err := json.Unmarshal(b, &old); err != nil {
			return fmt.Errorf("%s: %w (delete it to start afresh)", jsonPath, err)
		}
		for _, r := range old {
			byName[r.Name] = r
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	now := time.Now()
	for _, o := range res.Outcomes {
		byName[o.Fix.Name] = newRecord(o, now)
	}
	var recs []record
	for _, f := range all {
		if r, ok := byName[f.Name]; ok {
			// What the corpus says now about a known failure and where
			// the fix comes from wins over the record's copy.
			r.Known, r.Origin, r.CVEs = f.Known, f.Origin, f.CVEs
			recs = append(recs, r)
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })

	var b strings.Builder
	b.WriteString("# Corpus of real kernel fixes\n\n")
	b.WriteString("Written by `make corpus` (`internal/tools/corpus`, from `corpus.json` beside this file); do not edit by hand.\n")
	b.WriteString("The fixes, where each comes from and how it is checked: `corpus/<name>/fix.json`;\n")
	b.WriteString("the format and how to add one: [corpus/README.md](../corpus/README.md).\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", summarize(recs))
	fmt.Fprintf(&b, "%d of %d fixes of the corpus have a result (a fix without one is missing from the table).", len(recs), len(all))
	if len(res.Outcomes) > 0 {
		fmt.Fprintf(&b, " Last run: %s UTC, %d fixes in %s on %d CPUs (builds on a prepared tree; guests under QEMU TCG).",
			now.UTC().Format("2006-01-02 15:04"), len(res.Outcomes), res.Wall.Round(time.Second), runtime.NumCPU())
	}
	b.WriteString(" Build times are wall times of `build.Build` on a machine shared with other work.\n\n")
	b.WriteString("| fix | kernel | CVE | expect | result | build (s) | replaced / refused | run (UTC) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | ---: | --- | --- |\n")
	for _, r := range recs {
		result := "refused"
		switch {
		case r.OK && r.Expect == "build":
			result = "built, loaded, checked, reverted"
			if r.Modules {
				result += " (module loaded before and after)"
			}
			if r.Unpatched {
				result += "; the check fails unpatched"
			}
		case r.OK:
		case r.Known != "":
			result = "known failure: " + r.Known + " (" + r.Err + ")"
		default:
			result = "FAILED: " + r.Err
		}
		detail := strings.Join(r.Funcs, ", ")
		if r.Refusal != "" {
			detail = r.Refusal
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.1f | %s | %s |\n", r.Name, r.Kernel, strings.Join(r.CVEs, " "), r.Expect, cell(result), r.BuildTime, cell(detail), r.Run)
	}
	b.WriteString("\nWhere each fix comes from:\n\n")
	for _, r := range recs {
		fmt.Fprintf(&b, "- `%s`: %s\n", r.Name, r.Origin)
	}
	js, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(jsonPath, append(js, '\n')); err != nil {
		return err
	}
	return writeAtomic(path, []byte(b.String()))
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
