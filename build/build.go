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
	"crypto/sha256"
	"encoding/hex"
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
	Cache      string // default kpkg.CacheDir()
	KeepWork   bool   // keep the work folder (objects, generated C, module)
	Progress   io.Writer
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

// Result is a built livepatch module and its manifest (not yet signed).
type Result struct {
	Manifest *bundle.Manifest
	Module   []byte
	Funcs    []elfdiff.Func
	New      []string // new functions carried along
	Data     []string // new or per-call-site data carried along
	LineOnly []string // functions whose only change was a __LINE__ number
	// Hunks of the fix that applied with an offset or fuzz (--allow-fuzz);
	// each is also a warning.
	Hunks    []Hunk
	Objects  []ObjectPair
	Warnings []string
	Steps    []Step
	WorkDir  string // kept with KeepWork, or after a failure
	CSource  []byte // the generated livepatch.c
}

var reNameChars = regexp.MustCompile(`[^A-Za-z0-9_]+`)

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
func Build(ctx context.Context, opts Options) (res *Result, err error) {
	if opts.Kernel == "" {
		return nil, errors.New("build: no kernel release given (--kernel, e.g. 6.1.0-56-amd64)")
	}
	if len(opts.Patches) == 0 {
		return nil, errors.New("build: no fix given (--patch FILE)")
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	cache := opts.Cache
	if cache == "" {
		if cache, err = kpkg.CacheDir(); err != nil {
			return nil, err
		}
	}
	fetch := opts.Fetch
	if fetch == nil {
		fetch = kpkg.Fetch
	}
	name := opts.Name
	if name == "" {
		name = DefaultName(opts.Patches[0])
	}
	if len(name) > 55 || !regexp.MustCompile(`^[A-Za-z0-9_]+$`).MatchString(name) {
		return nil, fmt.Errorf("build: name %q: a module name is 1 to 55 letters, digits and _", name)
	}
	res = &Result{}
	step := func(n string, start time.Time) {
		d := time.Since(start)
		res.Steps = append(res.Steps, Step{Name: n, Duration: d})
		fmt.Fprintf(progress, "[%s] done in %.1fs\n", n, d.Seconds())
	}

	// Read the fix first: a bad patch file should fail before downloads.
	var patchData []byte
	var changes []FileChange
	for _, p := range opts.Patches {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read fix: %w", err)
		}
		c, err := ParsePatch(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		patchData = append(patchData, b...)
		changes = append(changes, c...)
	}
	objs, warns, err := objectsFor(changes, opts.Objects)
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, warns...)
	patches := make([]string, len(opts.Patches))
	for i, p := range opts.Patches {
		if patches[i], err = filepath.Abs(p); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	fmt.Fprintf(progress, "[kernel] %s packages\n", opts.Kernel)
	k, err := fetch(ctx, opts.Kernel, progress)
	if err != nil {
		return nil, fmt.Errorf("get kernel %s: %w", opts.Kernel, err)
	}
	step("kernel", start)

	pristine := ""
	if opts.Source == "" {
		start = time.Now()
		fmt.Fprintf(progress, "[source] linux-source %s\n", k.PackageVersion)
		if pristine, err = Source(ctx, cache, k.PackageVersion, progress); err != nil {
			return nil, err
		}
		step("source", start)
	}

	start = time.Now()
	fmt.Fprintf(progress, "[prepare] kernel tree for %s\n", k.Release)
	tree, err := PrepareTree(ctx, cache, pristine, opts.Source, k.Release, k.Config, progress)
	if err != nil {
		return nil, fmt.Errorf("prepare the kernel tree: %w", err)
	}
	step("prepare", start)

	work := filepath.Join(cache, "work", fmt.Sprintf("%s-%s", name, time.Now().UTC().Format("20060102T150405.000000000")))
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	res.WorkDir = work
	defer func() {
		if err == nil && !opts.KeepWork {
			os.RemoveAll(work)
			res.WorkDir = ""
		}
	}()

	start = time.Now()
	fmt.Fprintf(progress, "[compile] %s\n", strings.Join(objs, " "))
	pairs, hunks, err := tree.Compile(ctx, cache, Fix{Patches: patches, Changes: changes, AllowFuzz: opts.AllowFuzz}, objs, work, progress)
	if err != nil {
		return nil, err
	}
	res.Objects, res.Hunks = pairs, hunks
	for _, h := range hunks {
		res.Warnings = append(res.Warnings, h.String())
	}
	step("compile", start)

	start = time.Now()
	fmt.Fprintln(progress, "[symbols] kallsyms, Module.symvers, module symbol tables")
	vmsyms, buildID, err := KernelSymbols(ctx, k.Vmlinuz, filepath.Join(cache, "build", k.Release))
	if err != nil {
		return nil, fmt.Errorf("read the kernel's symbols: %w", err)
	}
	symvers, err := ReadSymvers(filepath.Join(k.HeadersDir, "Module.symvers"))
	if err != nil {
		return nil, fmt.Errorf("read the kernel's exports: %w", err)
	}
	step("symbols", start)

	start = time.Now()
	fmt.Fprintln(progress, "[diff] comparing objects")
	objects := map[string][]byte{}
	owners := map[string]string{}
	var refusals []elfdiff.Refusal
	var vmCode shippedCode
	for i, p := range pairs {
		symtab := vmsyms
		var koPath string
		if p.Target != "vmlinux" {
			if symtab, koPath, err = ModuleSymbols(k.ModulesDir, p.Target, p.ModFile); err != nil {
				return nil, err
			}
		}
		dopts := elfdiff.Options{Object: p.Target, File: p.Source, Symtab: symtab, Exported: symvers.Exported, Prefix: fmt.Sprint(i)}
		if opts.Force != nil {
			src := p.Source
			dopts.Force = func(fn string) bool { return opts.Force(src, fn) }
		}
		r, err := diffPair(p, dopts)
		var re *elfdiff.RefusedError
		if errors.As(err, &re) {
			refusals = append(refusals, re.Refusals...)
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Warnings = append(res.Warnings, r.Warnings...)
		res.LineOnly = append(res.LineOnly, r.LineOnly...)
		res.New = append(res.New, r.New...)
		res.Data = append(res.Data, r.Data...)
		for _, f := range r.Funcs {
			fmt.Fprintf(progress, "[diff] %s: %s changed (%s, sympos %d)\n", p.Source, f.Name, f.Object, f.Sympos)
		}
		if !opts.NoVerify && len(r.Funcs) > 0 {
			code := vmCode
			if p.Target == "vmlinux" && code == nil {
				vml, err := Vmlinux(ctx, k.Vmlinuz, filepath.Join(cache, "build", k.Release, "vmlinux"))
				if err != nil {
					return nil, err
				}
				if vmCode, err = vmlinuxCode(vml, vmsyms); err != nil {
					return nil, err
				}
				code = vmCode
			} else if p.Target != "vmlinux" {
				b, err := os.ReadFile(koPath)
				if err != nil {
					return nil, err
				}
				ko, err := elfdiff.Read(b)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", koPath, err)
				}
				code = moduleCode(ko, p.Source)
			}
			orig, err := readObject(p.Orig)
			if err != nil {
				return nil, err
			}
			if err := verifyOriginals(orig, r.Funcs, code); err != nil {
				return nil, fmt.Errorf("%s: %w", p.Source, err)
			}
		}
		if r.Object == nil {
			continue
		}
		out, err := elfdiff.Write(r.Object)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Source, err)
		}
		objects[fmt.Sprintf("patch%d.o", i)] = out
		for _, s := range r.Sections {
			if o, ok := owners[s]; ok && o != p.Target {
				return nil, fmt.Errorf("section %s holds code for both %s and %s: build the two fixes separately", s, o, p.Target)
			}
			owners[s] = p.Target
		}
		res.Funcs = append(res.Funcs, r.Funcs...)
	}
	if len(refusals) > 0 {
		return nil, &elfdiff.RefusedError{Refusals: refusals}
	}
	if len(res.Funcs) == 0 {
		msg := "the fix changes no function's code"
		if len(res.LineOnly) > 0 {
			msg += " (only __LINE__ numbers moved in " + strings.Join(res.LineOnly, ", ") + ")"
		}
		return nil, fmt.Errorf("build: %s: nothing to live patch", msg)
	}
	if err := checkCumulative(opts.Cumulative, k.Release, res.Funcs); err != nil {
		return nil, err
	}
	step("diff", start)

	start = time.Now()
	fmt.Fprintf(progress, "[link] %s.ko against %s\n", name, k.HeadersDir)
	desc := opts.Description
	if desc == "" {
		var bases []string
		for _, p := range opts.Patches {
			bases = append(bases, filepath.Base(p))
		}
		desc = "Live patch built by stent from " + strings.Join(bases, ", ")
	}
	module, csrc, err := LinkModule(ctx, filepath.Join(work, "module"), k.HeadersDir, tree.CC, name, desc, !opts.NoReplace, objects, res.Funcs, owners)
	if err != nil {
		return nil, err
	}
	res.Module, res.CSource = module, csrc
	step("link", start)

	sum := sha256.Sum256(patchData)
	m := &bundle.Manifest{
		FormatVersion: bundle.FormatVersion,
		Name:          name,
		Kernel:        bundle.Kernel{Release: k.Release, BuildID: buildID, PackageVersion: k.PackageVersion},
		Level:         1,
		Replace:       !opts.NoReplace,
		CVEs:          cveUnion(opts.CVEs, opts.Cumulative),
		Description:   desc,
		Created:       time.Now().UTC().Truncate(time.Second),
		SourceSHA256:  hex.EncodeToString(sum[:]),
	}
	if opts.Cumulative != nil {
		m.Level = opts.Cumulative.Level + 1
	}
	for _, f := range res.Funcs {
		m.Functions = append(m.Functions, bundle.Function{Object: f.Object, Name: f.Name, Sympos: int64(f.Sympos)})
	}
	res.Manifest = m
	return res, nil
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
