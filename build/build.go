// Package build turns a source fix into a livepatch module for a
// distribution kernel without building the whole kernel: it prepares the
// kernel's source once per release (config, modules_prepare), compiles only
// the objects the fix touches before and after applying it, lets elfdiff
// pick out the changed functions, and links them with a generated
// klp_patch description against the kernel's headers.
//
// The steps that download and extract packages cache their results under
// $STENT_CACHE (see internal/kpkg): the source under source/<version>, the
// prepared tree under trees/<release>, symbol tables under
// build/<release>.
package build

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/kpkg"
)

// Options describe one build.
type Options struct {
	Kernel      string   // target release (uname -r), e.g. 6.1.0-56-amd64
	Patches     []string // fix files (unified diffs), applied in order
	Source      string   // a kernel source tree to use instead of the distribution's source package
	Name        string   // module and patch name; default derived from the first patch file
	Description string
	CVEs        []string
	Objects     []string // extra objects to compile (needed when the fix changes a header)
	NoReplace   bool     // build a non-cumulative patch (klp_patch.replace = false)
	// NoVerify skips comparing the replaced functions, as compiled here
	// from the unpatched source, with the code the distribution shipped.
	NoVerify bool
	// AllowFuzz accepts a fix whose hunks apply only with fuzz (patch(1)
	// ignoring context lines that differ from this kernel's source).
	AllowFuzz bool
	// Cumulative is the bundle this build replaces (--cumulative-with): the
	// new patch gets the next level and must still patch every function
	// the old one did.
	Cumulative *bundle.Manifest
	// Effective is the distribution package version the fix brings the
	// kernel up to (--effective-version), for the manifest's effective
	// section; "" leaves it out.
	Effective string
	// Key signs the bundle: with it, Result.Bundle is the signed bundle
	// (bundle.Create) and Result.KeyID names the key. Without it Build
	// returns the module and its manifest only, for the caller to sign.
	Key      ed25519.PrivateKey
	Cache    string // default kpkg.CacheDir()
	KeepWork bool   // keep the work folder (objects, generated C, module)
	Progress io.Writer
	// Force carries functions as if the fix had changed them (tests use it
	// to run the extraction over every function of real objects).
	Force func(source, function string) bool
	// Fetch gets the kernel's packages; default kpkg.Fetch.
	Fetch func(ctx context.Context, abi string, progress io.Writer) (*kpkg.Kernel, error)
}

// Step is the timing of one build step.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// Result is a built livepatch module and its manifest, and the signed
// bundle of the two when Options.Key was given.
type Result struct {
	Manifest *bundle.Manifest // module_sha256 and module_size filled in
	Module   []byte
	Bundle   []byte       // the signed bundle; nil without Options.Key
	KeyID    bundle.KeyID // the key that signed Bundle
	Funcs    []elfdiff.Func
	New      []string // new functions carried along
	Data     []string // new or per-call-site data carried along
	LineOnly []string // functions whose only change was a __LINE__ number
	// Callbacks the fix registers with stent/livepatch.h: the klp_callbacks
	// of their objects.
	Callbacks []elfdiff.Callback
	// Hunks of the fix that applied with an offset or fuzz (--allow-fuzz);
	// each is also a warning.
	Hunks    []Hunk
	Objects  []ObjectPair
	Warnings []string
	Steps    []Step
	WorkDir  string // kept with KeepWork, or after a failure
	CSource  []byte // the generated livepatch.c
}

var (
	reNameChars  = regexp.MustCompile(`[^A-Za-z0-9_]+`)
	reModuleName = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

// DefaultName derives a module name from a patch file name:
// "CVE-2024-1086.patch" -> "stent_cve_2024_1086".
func DefaultName(patch string) string {
	base := strings.TrimSuffix(filepath.Base(patch), filepath.Ext(patch))
	n := strings.Trim(reNameChars.ReplaceAllString(strings.ToLower(base), "_"), "_")
	if n == "" {
		n = "patch"
	}
	n = "stent_" + n
	if len(n) > 55 { // MODULE_NAME_LEN - 1
		n = n[:55]
	}
	return n
}

// Build runs every step and returns the module and its manifest. On a
// refused fix the error wraps elfdiff.ErrRefused (a *elfdiff.RefusedError
// lists why); on a patch that does not apply, ErrPatchDoesNotApply (or
// ErrPatchFuzz when it applies only with fuzz and AllowFuzz is off); on a
// compile failure, a *MakeError quoting the compiler.
//
// The steps, each a method of builder (builder.go), in order: read the fix
// (before any download), get the kernel's packages, get its source, prepare
// the tree, compile the touched objects before and after the fix, read the
// kernel's symbols, diff the objects (and verify the originals against the
// shipped code), link the module, describe it in a manifest, and sign the
// bundle when Options.Key is given.
func Build(ctx context.Context, opts Options) (*Result, error) {
	b, err := newBuilder(opts)
	if err != nil {
		return nil, err
	}
	if err := b.readFix(); err != nil {
		return nil, err
	}
	if err := b.timed(ctx, "kernel", b.fetchKernel); err != nil {
		return nil, err
	}
	if opts.Source == "" {
		if err := b.timed(ctx, "source", b.fetchSource); err != nil {
			return nil, err
		}
	}
	if err := b.timed(ctx, "prepare", b.prepareTree); err != nil {
		return nil, err
	}
	if err := b.makeWorkDir(); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"compile", b.compile},
		{"symbols", b.readSymbols},
		{"diff", b.diff},
		{"link", b.link},
	} {
		if err := b.timed(ctx, s.name, s.run); err != nil {
			return nil, b.failed(err)
		}
	}
	b.makeManifest()
	if err := b.sign(); err != nil {
		return nil, err
	}
	if !opts.KeepWork {
		os.RemoveAll(b.work)
		b.res.WorkDir = ""
	}
	return b.res, nil
}

// failed ends a build that failed after its work folder was made. A fix
// refused as not live-patchable, a patch that does not apply and a
// cancelled build leave nothing the error does not already say, so their
// folder goes (a patch factory probing fixes one by one would otherwise
// fill its cache); any other failure (a compiler or linker error) keeps it
// to look into and says where. With KeepWork the folder always stays.
func (b *builder) failed(err error) error {
	gone := errors.Is(err, elfdiff.ErrRefused) || errors.Is(err, ErrPatchDoesNotApply) || errors.Is(err, ErrPatchFuzz) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	if gone && !b.opts.KeepWork {
		os.RemoveAll(b.work)
		b.res.WorkDir = ""
		return err
	}
	return fmt.Errorf("%w\nwork folder kept: %s", err, b.work)
}

func readObject(path string) (*elfdiff.File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := elfdiff.Read(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func diffPair(p ObjectPair, opts elfdiff.Options) (*elfdiff.Result, error) {
	o, err := readObject(p.Orig)
	if err != nil {
		return nil, err
	}
	n, err := readObject(p.Patched)
	if err != nil {
		return nil, err
	}
	return elfdiff.Diff(o, n, opts)
}

// checkCumulative makes sure a patch replacing old keeps every function old
// patched: a cumulative patch replaces all earlier ones, so a function it
// leaves out would silently lose its fix.
func checkCumulative(old *bundle.Manifest, release string, funcs []elfdiff.Func) error {
	if old == nil {
		return nil
	}
	if old.Kernel.Release != release {
		return fmt.Errorf("--cumulative-with: %s is for kernel %s, not %s", old.Name, old.Kernel.Release, release)
	}
	have := map[string]bool{}
	for _, f := range funcs {
		have[f.Object+":"+f.Name] = true
	}
	var lost []string
	for _, f := range old.Functions {
		if !have[f.Object+":"+f.Name] {
			lost = append(lost, f.Object+":"+f.Name)
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		return fmt.Errorf("--cumulative-with %s: the new patch would replace it but does not patch %s; pass the earlier fix too (--patch OLD.patch --patch NEW.patch)",
			old.Name, strings.Join(lost, ", "))
	}
	return nil
}

func cveUnion(ids []string, old *bundle.Manifest) []string {
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		id = strings.ToUpper(strings.TrimSpace(id))
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, id := range ids {
		add(id)
	}
	if old != nil {
		for _, id := range old.CVEs {
			add(id)
		}
	}
	return out
}
