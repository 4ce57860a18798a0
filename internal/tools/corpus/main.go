// Command corpus runs Stent's corpus of real kernel fixes (make corpus):
// every corpus/<name>/fix.patch is built with build.Build for its kernel
// (one prepared tree per kernel, shared by all its fixes); the fixes that
// must build are applied with stent apply in one guest per kernel booted
// under QEMU (reused across fixes), their check exercises the patched code
// from user space while the function tracer watches the patch module,
// then they are reverted; module fixes run with the module loaded before
// and again loaded after the patch. The fixes that must be refused must be
// refused by the rule and for the symbol their fix.json names.
//
// It prints one line per fix to stderr, then exactly one summary line to
// stdout:
//
//	corpus: N/M built, loaded and checked, K/L refused, O oopses
//
// and writes the per-fix results and build times to docs/corpus.md
// (-report). The exit status is 1 when a fix did not do what its fix.json
// expects (fixes with a known_failure are reported, not failed).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "corpus:", err)
		os.Exit(1)
	}
}

type config struct {
	dir    string   // the corpus folder
	report string   // docs/corpus.md; "" writes none
	only   []string // fix names; empty: all
	subset bool     // only the fixes marked subset
	noVM   bool     // build only: no guest
	log    io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("corpus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./internal/tools/corpus [-dir corpus] [-report docs/corpus.md] [-subset] [fix ...]")
		fmt.Fprintln(stderr, "\nBuilds every fix of the corpus, applies, checks and reverts the ones that must build in a QEMU guest,")
		fmt.Fprintln(stderr, "checks that the others are refused, prints one summary line and writes the report.")
		fs.PrintDefaults()
	}
	repo, _ := kpkg.RepoRoot()
	dir := fs.String("dir", filepath.Join(repo, "corpus"), "the corpus: one folder per fix with fix.patch and fix.json")
	report := fs.String("report", filepath.Join(repo, "docs", "corpus.md"), `per-fix results and build times ("" for none)`)
	subset := fs.Bool("subset", false, "only the fixes marked \"subset\" (what make test runs)")
	render := fs.Bool("render", false, "instead: write the report from its JSON and the corpus as it is now, running nothing")
	cumulative := fs.Bool("cumulative", false, "instead: build the fixes marked \"cumulative\" into two cumulative patches (the first half, then all) and replace the first with the second in a guest while their checks run in a loop")
	noVM := fs.Bool("build-only", false, "build (or expect refusals) only, boot no guest: fixes that must build count as not checked")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := config{dir: *dir, report: *report, only: fs.Args(), subset: *subset, noVM: *noVM, log: stderr}
	if *render {
		all, err := loadCorpus(cfg.dir)
		if err != nil {
			return err
		}
		return writeReport(cfg.report, &corpusResult{All: all}, all)
	}
	if *cumulative {
		c, err := runCumulative(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "corpus: cumulative patch of %d fixes (%d functions) built in %v (level 1, %d fixes: %v); replaced level 1 live in %v while the checks ran in a loop (%d rounds before, %d when the apply returned, %d in all; level 1's fixes never failed, level 2's new ones failed %d times before its apply returned, never after); every fix checked in level 2; reverted; 0 oopses\n",
			len(c.All), c.FuncsAll, c.BuildAll.Round(100*time.Millisecond), len(c.First), c.BuildFirst.Round(100*time.Millisecond), c.Transition.Round(time.Millisecond), c.RoundsBefore, c.RoundsAt, c.Rounds, c.NewFailedBefore)
		return nil
	}
	res, err := runCorpus(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.summary())
	if cfg.report != "" && !cfg.noVM {
		if err := writeReport(cfg.report, res, res.All); err != nil {
			return err
		}
	}
	if bad := res.failed(); len(bad) > 0 {
		return fmt.Errorf("%d fixes did not do what their fix.json expects: %s", len(bad), strings.Join(bad, ", "))
	}
	return nil
}

// corpusResult is a whole run.
type corpusResult struct {
	All      []*Fix     // the whole corpus
	Outcomes []*outcome // the fixes run
	Wall     time.Duration
}

// summary is the run's one line: its own fixes only.
func (r *corpusResult) summary() string {
	var recs []record
	for _, o := range r.Outcomes {
		recs = append(recs, newRecord(o, time.Time{}))
	}
	return summarize(recs)
}

// failed lists the fixes that did not do what they should, except known
// failures.
func (r *corpusResult) failed() []string {
	var bad []string
	for _, x := range r.Outcomes {
		if !x.ok() && x.Fix.Known == "" {
			bad = append(bad, x.Fix.Name)
		}
	}
	return bad
}

func runCorpus(ctx context.Context, cfg config) (*corpusResult, error) {
	start := time.Now()
	fixes, err := loadCorpus(cfg.dir)
	if err != nil {
		return nil, err
	}
	all := fixes
	fixes, err = selectFixes(fixes, cfg.only, cfg.subset)
	if err != nil {
		return nil, err
	}
	r, err := newRunner(cfg.log)
	if err != nil {
		return nil, err
	}
	defer r.close()
	res := &corpusResult{All: all}
	byKernel := map[string][]*outcome{}
	var kernels []string
	for _, f := range fixes {
		o := r.build(ctx, f)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.Outcomes = append(res.Outcomes, o)
		fmt.Fprintf(cfg.log, "corpus: %s: %.1fs, %s\n", f.Name, o.BuildTime, buildLine(o))
		if o.Built && f.Expect == "build" {
			if byKernel[f.Kernel] == nil {
				kernels = append(kernels, f.Kernel)
			}
			byKernel[f.Kernel] = append(byKernel[f.Kernel], o)
		}
	}
	for _, k := range kernels {
		if cfg.noVM {
			for _, o := range byKernel[k] {
				o.Err = "not run in a guest (-build-only)"
			}
			continue
		}
		if err := r.guestRun(ctx, k, byKernel[k]); err != nil {
			return nil, err
		}
	}
	for _, o := range res.Outcomes {
		status := "ok"
		if !o.ok() {
			status = "FAIL: " + o.Err
			if o.Fix.Known != "" {
				status = "known failure (" + o.Fix.Known + "): " + o.Err
			}
		}
		fmt.Fprintf(cfg.log, "corpus: %-28s %-6s %5.1fs  %s\n", o.Fix.Name, o.Fix.Expect, o.BuildTime, status)
	}
	res.Wall = time.Since(start)
	return res, nil
}

func selectFixes(all []*Fix, only []string, subset bool) ([]*Fix, error) {
	if len(only) == 0 && !subset {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range only {
		want[n] = true
	}
	var out []*Fix
	for _, f := range all {
		if (len(only) == 0 || want[f.Name]) && (!subset || f.Subset) {
			out = append(out, f)
			delete(want, f.Name)
		}
	}
	for n := range want {
		return nil, fmt.Errorf("corpus: no fix named %q", n)
	}
	if len(out) == 0 {
		return nil, errors.New("corpus: no fix selected")
	}
	return out, nil
}

// buildLine says what the build step gave.
func buildLine(o *outcome) string {
	switch {
	case o.Refused:
		return fmt.Sprintf("refused as expected (%s %s)", o.Refusal.Rule, o.Refusal.Symbol)
	case o.Built:
		return "built: " + strings.Join(o.Funcs, ", ")
	default:
		return "FAIL: " + o.Err
	}
}
