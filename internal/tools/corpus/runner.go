package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
)

// runner holds what the fixes share: a signing key the guests trust and
// the bundles built so far.
type runner struct {
	log     io.Writer
	tmp     string
	key     ed25519.PrivateKey
	pub     []byte
	bundles map[string][]byte // fix name -> signed bundle
}

func newRunner(log io.Writer) (*runner, error) {
	tmp, err := os.MkdirTemp("", "stent-corpus-")
	if err != nil {
		return nil, err
	}
	kf, err := bundle.GenerateKey(tmp, "corpus", false)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	key, err := bundle.LoadPrivateKey(kf.Private)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	pub, err := os.ReadFile(kf.Public)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &runner{log: log, tmp: tmp, key: key, pub: pub, bundles: map[string][]byte{}}, nil
}

func (r *runner) close() { os.RemoveAll(r.tmp) }

// build builds one fix and checks the result against its fix.json: the
// functions it replaces, or the refusal.
func (r *runner) build(ctx context.Context, f *Fix) *outcome {
	o := &outcome{Fix: f}
	fmt.Fprintf(r.log, "corpus: building %s for %s\n", f.Name, f.Kernel)
	start := time.Now()
	res, err := build.Build(ctx, build.Options{
		Kernel:      f.Kernel,
		Patches:     []string{f.Patch},
		Name:        f.moduleName(),
		Description: f.Summary,
		CVEs:        f.CVEs,
		Objects:     f.Objects,
		Key:         r.key,
	})
	o.BuildTime = time.Since(start).Seconds()
	var re *elfdiff.RefusedError
	switch {
	case errors.As(err, &re):
		for i := range re.Refusals {
			if string(re.Refusals[i].Rule) == f.Rule && re.Refusals[i].Symbol == f.Symbol {
				o.Refusal = &re.Refusals[i]
			}
		}
		switch {
		case f.Expect == "build":
			o.Err = "refused: " + oneLine(err.Error())
		case o.Refusal == nil:
			o.Err = fmt.Sprintf("refused, but not by rule %s for %s: %s", f.Rule, f.Symbol, oneLine(err.Error()))
		case o.Refusal.Suggest == "":
			o.Err = "refused without saying what to do instead"
		default:
			o.Refused = true
		}
	case err != nil:
		o.Err = "build: " + oneLine(err.Error())
	case f.Expect == "refuse":
		o.Err = fmt.Sprintf("built (replacing %s), want refused by rule %s", strings.Join(funcNames(res), ", "), f.Rule)
	default:
		o.Funcs = funcNames(res)
		want := slices.Clone(f.Functions)
		sort.Strings(want)
		if !slices.Equal(o.Funcs, want) {
			o.Err = fmt.Sprintf("replaced %v, want %v", o.Funcs, want)
			break
		}
		o.Built = true
		r.bundles[f.Name] = res.Bundle
	}
	return o
}

func funcNames(res *build.Result) []string {
	var out []string
	for _, f := range res.Funcs {
		out = append(out, f.Name)
	}
	sort.Strings(out)
	return out
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// guestRun boots kernel once for all its built fixes and exercises each;
// a guest that dies (panic) is booted again for the next fix.
func (r *runner) guestRun(ctx context.Context, kernel string, outs []*outcome) error {
	k, err := kpkg.Fetch(ctx, kernel, r.log)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", kernel, err)
	}
	files := []vmtest.File{{Path: "/etc/stent/keys/corpus.pub", Data: r.pub}}
	var modules []string
	for _, o := range outs {
		files = append(files, vmtest.File{Path: "/root/" + o.Fix.Name + ".bundle", Data: r.bundles[o.Fix.Name]})
		for _, m := range o.Fix.Modules {
			if !slices.Contains(modules, m) {
				modules = append(modules, m)
			}
		}
		gf, err := r.guestFiles(ctx, o.Fix)
		if err != nil {
			return err
		}
		files = append(files, gf...)
	}
	logDir := filepath.Join(r.tmp, kernel)
	start := time.Now()
	// A busy machine (TCG at low priority) boots slowly: a generous timeout,
	// and a guest that does not come up fails its fixes, not the run.
	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: k, Files: files, Modules: modules, MemMB: 1024, LogDir: logDir, BootTimeout: 6 * time.Minute, Append: bootAppend})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, o := range outs {
			o.Err = fmt.Sprintf("boot %s: %v", kernel, oneLine(err.Error()))
		}
		return nil
	}
	defer vm.Close()
	fmt.Fprintf(r.log, "corpus: booted %s in %v\n", kernel, time.Since(start).Round(time.Millisecond))
	g := &guestSession{ctx: ctx, vm: vm, log: r.log}
	for _, o := range outs {
		g.exercise(o)
		if g.down {
			fmt.Fprintf(r.log, "corpus: guest died during %s; console:\n%s\n", o.Fix.Name, vm.ConsoleTail(40))
			if err := vm.Reboot(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				for _, rest := range outs {
					if !rest.Loaded && rest.Err == "" {
						rest.Err = fmt.Sprintf("reboot %s after %s: %v", kernel, o.Fix.Name, oneLine(err.Error()))
					}
				}
				return nil
			}
			g.down = false
		}
	}
	return nil
}

// guestFiles are the fix's guest/ folder, /root/<name>/ in the guest; each
// C program there (x.c) is compiled statically on the host into x.
func (r *runner) guestFiles(ctx context.Context, f *Fix) ([]vmtest.File, error) {
	dir := filepath.Join(f.Dir, "guest")
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var files []vmtest.File
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src := filepath.Join(dir, e.Name())
		files = append(files, vmtest.File{Path: "/root/" + f.Name + "/" + e.Name(), Src: src, Mode: 0o755})
		if strings.HasSuffix(e.Name(), ".c") {
			bin := filepath.Join(r.tmp, f.Name+"-"+strings.TrimSuffix(e.Name(), ".c"))
			out, err := exec.CommandContext(ctx, "gcc", "-static", "-O2", "-Wall", "-o", bin, src).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("compile %s for the guest: %v\n%s", src, err, out)
			}
			files = append(files, vmtest.File{Path: "/root/" + f.Name + "/" + strings.TrimSuffix(e.Name(), ".c"), Src: bin, Mode: 0o755})
		}
	}
	return files, nil
}

// bootAppend is added to the guests' kernel command line: on a host so
// busy that TCG starves, the kernel's IO-APIC timer check fails and it
// panics at boot ("IO-APIC + timer doesn't work", seen in a -cumulative
// run at load 17); no_timer_check skips that check.
const bootAppend = "no_timer_check"
