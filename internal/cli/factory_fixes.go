package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/factory"
	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/internal/kpkg"
)

// factoryFixesResult is what stent factory fixes --json prints: the upload
// and, per fix, the patch file written; with --triage each fix's triage
// and the counts per verdict and rule.
type factoryFixesResult struct {
	*factory.Upload
	Patches map[string]string `json:"patches,omitempty"` // fix name -> file written
	// TriageKernel is the kernel whose configuration the triage used.
	TriageKernel string `json:"triage_kernel,omitempty"`
	// TriageCounts count the fixes (and, apart, the unattributed files)
	// per verdict and per verdict/rule.
	TriageCounts             map[string]int `json:"triage_counts,omitempty"`
	UnattributedTriageCounts map[string]int `json:"unattributed_triage_counts,omitempty"`
}

func factoryFixesCmd(env *Env) *cobra.Command {
	var from, to, out, kernel string
	var opts factory.Options
	var asJSON bool
	c := &cobra.Command{
		Use:   "fixes --from OLD --to NEW [-o DIR] [--triage [--kernel RELEASE | --config FILE]]",
		Short: "List the fixes a kernel upload brings over the one before it, one patch per fix",
		Long: `List the fixes a Debian kernel upload brings over an earlier one (linux-source
package versions, e.g. --from 6.1.192-2 --to 6.1.192-3): both packages'
sources are compared file by file, and the difference is split between the
changelog items of every upload after --from up to --to, each with the
CVEs the item names. With one item, the whole difference is its fix; with
several, a file goes to the item whose subsystem prefix ("nfsd:",
"io_uring/io-wq:") matches its path best, and a file no item claims is
reported as unattributed (its difference is kept, nothing is dropped
silently).

With --git REPO and --cna DIR, a fix whose CVE has a kernel CNA record
(DIR in the CNA repository's layout, cve/published/YEAR/CVE-ID.dyad)
naming the fixing commit for the series' stable branch (6.1) is taken from
REPO, a clone of the stable kernel, instead: a commit REPO lacks is an
error naming it. Every fix is checked to apply (patch --dry-run, no fuzz)
to the --from source; one that does not is an error and nothing is
written.

-o DIR writes one patch per fix, DIR/<upload>_<n>.patch (and
DIR/unattributed.patch), ready for stent build --patch. The packages and
their sources are cached under $STENT_CACHE.

--triage says of each fix, without building it, whether it can be a live
patch: "candidate" (code the kernel runs changes and nothing below applies),
"refuse" (it changes a struct's layout or a variable's initial value,
__init code or an initcall, an export, code built without ftrace, the
build's Kconfig or Makefiles, or adds a source file: for its CVEs the path
is a reboot), or "nothing" (only documentation or tooling, another
architecture, or files the kernel's configuration does not build), with
the file and symbol of each reason. It reads the fix, the --from source
and the configuration of --kernel (its image package is downloaded and
cached) or --config; with neither, x86 and every file built. It is a
static reading: the builder may still refuse a candidate. The
unattributed difference is triaged file by file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("factory fixes: give both uploads: --from 6.1.192-2 --to 6.1.192-3 (linux-source package versions)")
			}
			var err error
			if opts.Cache == "" {
				if opts.Cache, err = buildCache(); err != nil {
					return err
				}
			}
			opts.Progress = env.Stderr
			if (kernel != "" || opts.Config != "") && !opts.Triage {
				return errors.New("factory fixes: --kernel and --config are for --triage")
			}
			if kernel != "" && opts.Config != "" {
				return errors.New("factory fixes: give --kernel or --config, not both")
			}
			if kernel != "" {
				k, err := kpkg.Fetch(cmd.Context(), kernel, env.Stderr)
				if err != nil {
					return fmt.Errorf("--kernel %s: %w", kernel, err)
				}
				opts.Config = k.Config
			}
			up, err := factory.Extract(cmd.Context(), from, to, opts)
			if err != nil {
				return err
			}
			res := factoryFixesResult{Upload: up}
			if opts.Triage {
				switch {
				case kernel != "":
					res.TriageKernel = kernel
				case opts.Config != "":
					res.TriageKernel = opts.Config
				default:
					res.TriageKernel = "none: x86, every file built"
				}
				var ts, us []*factory.Triage
				for i := range up.Fixes {
					ts = append(ts, up.Fixes[i].Triage)
				}
				for i := range up.UnattributedTriage {
					us = append(us, &up.UnattributedTriage[i].Triage)
				}
				res.TriageCounts, res.UnattributedTriageCounts = factory.TriageCounts(ts), factory.TriageCounts(us)
			}
			if out != "" {
				if res.Patches, err = writeFixes(out, up); err != nil {
					return err
				}
			}
			if asJSON {
				return writeJSON(env.Stdout, res)
			}
			printFixes(env.Stdout, res)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&from, "from", "", "the earlier upload (linux-source package version), e.g. 6.1.192-2")
	f.StringVar(&to, "to", "", "the new upload, e.g. 6.1.192-3")
	f.StringVarP(&out, "output", "o", "", "write one patch per fix into this folder")
	f.StringVar(&opts.Git, "git", "", "git repository of the stable kernel to take CNA-named stable commits from")
	f.StringVar(&opts.CNA, "cna", "", "folder of kernel CNA records (cve/published/YEAR/CVE-ID.dyad), with --git")
	f.StringVar(&opts.Branch, "branch", "", "stable branch of the CNA records to use (default: the series, 6.1)")
	f.BoolVar(&opts.Triage, "triage", false, "say of each fix whether it can be a live patch, and why not, without building")
	f.StringVar(&kernel, "kernel", "", "with --triage: the kernel build (e.g. 6.1.0-54-amd64) whose configuration decides what is built")
	f.StringVar(&opts.Config, "config", "", "with --triage: a kernel configuration file instead of --kernel's")
	jsonFlag(c, &asJSON)
	return c
}

// writeFixes writes each fix's patch into dir; it returns fix name -> file.
func writeFixes(dir string, up *factory.Upload) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-o: %w", err)
	}
	files := map[string]string{}
	write := func(name, patch string) error {
		p := filepath.Join(dir, name+".patch")
		if err := atomicfile.Write(p, []byte(patch), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		files[name] = p
		return nil
	}
	for i := range up.Fixes {
		if err := write(up.Fixes[i].Name(), up.Fixes[i].Patch); err != nil {
			return nil, err
		}
	}
	if u := up.Unattributed; u != nil {
		if err := write("unattributed", u.Patch); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func printFixes(w io.Writer, r factoryFixesResult) {
	up := r.Upload
	fmt.Fprintf(w, "Upload %s over %s: %d fixes\n", up.Version, up.Previous, len(up.Fixes))
	for _, f := range up.Fixes {
		cves := "no CVE"
		if len(f.CVEs) > 0 {
			cves = strings.Join(f.CVEs, ", ")
		}
		origin := f.Origin
		if f.Commit != "" {
			origin += " " + f.Commit[:12]
		}
		fmt.Fprintf(w, "  %s  %s\n      %s; %s; %s\n", f.Name(), f.Summary, cves, strings.Join(f.Files, " "), origin)
		if t := f.Triage; t != nil {
			fmt.Fprintf(w, "      %s\n", triageLine(t))
		}
		if p := r.Patches[f.Name()]; p != "" {
			fmt.Fprintf(w, "      written to %s\n", p)
		}
	}
	if u := up.Unattributed; u != nil {
		fmt.Fprintf(w, "Unattributed (no changelog item claims them): %s\n", strings.Join(u.Files, " "))
		for _, ft := range up.UnattributedTriage {
			if ft.Verdict != factory.VerdictNothing {
				fmt.Fprintf(w, "      %s: %s\n", ft.File, triageLine(&ft.Triage))
			}
		}
	}
	if r.TriageCounts != nil {
		fmt.Fprintf(w, "Triage (configuration of %s): fixes %s\n", r.TriageKernel, countsLine(r.TriageCounts))
		if len(up.UnattributedTriage) > 0 {
			fmt.Fprintf(w, "  unattributed files %s\n", countsLine(r.UnattributedTriageCounts))
		}
	}
	for _, s := range up.Unplaced {
		fmt.Fprintf(w, "No source change for: %s\n", s)
	}
	for _, s := range up.Skipped {
		fmt.Fprintf(w, "Skipped (not a text difference): %s\n", s)
	}
	for _, s := range up.Steps {
		fmt.Fprintf(w, "  %-6s %.1fs\n", s.Name, s.Duration.Seconds())
	}
}

// triageLine is a triage in one line: the verdict and its reasons, or a
// candidate's functions.
func triageLine(t *factory.Triage) string {
	var parts []string
	list := t.Reasons
	if t.Verdict == factory.VerdictCandidate {
		list = nil
		for _, n := range t.Notes {
			if n.Rule == factory.NoteFunction || n.Rule == factory.NoteHeader || n.Rule == factory.NoteModule {
				list = append(list, n)
			}
		}
	}
	for _, r := range list {
		s := r.Rule + " " + r.File
		if r.Symbol != "" {
			s += " " + r.Symbol
		}
		parts = append(parts, s)
	}
	const most = 6
	if len(parts) > most {
		parts = append(parts[:most], fmt.Sprintf("and %d more", len(parts)-most))
	}
	return t.Verdict + ": " + strings.Join(parts, "; ")
}

// countsLine is "12 candidate, 3 refuse (data-changed 2, init-changed 1), ...".
func countsLine(c map[string]int) string {
	var out []string
	for _, v := range []string{factory.VerdictCandidate, factory.VerdictRefuse, factory.VerdictNothing} {
		s := fmt.Sprintf("%d %s", c[v], v)
		var rules []string
		for k, n := range c {
			if r, ok := strings.CutPrefix(k, v+"/"); ok {
				rules = append(rules, fmt.Sprintf("%s %d", r, n))
			}
		}
		sort.Strings(rules)
		if len(rules) > 0 {
			s += " (" + strings.Join(rules, ", ") + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}
