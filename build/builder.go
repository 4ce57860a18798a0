package build

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/kpkg"
)

// builder carries one build through its steps (see Build). Each step reads
// what the steps before it left in the builder and adds its own part.
type builder struct {
	opts     Options
	progress io.Writer
	cache    string
	fetch    func(ctx context.Context, abi string, progress io.Writer) (*kpkg.Kernel, error)
	name     string
	res      *Result

	// readFix
	patchData []byte       // the fix files, concatenated: the manifest's source_sha256
	changes   []FileChange // what they change
	patches   []string     // their absolute paths
	objs      []string     // the objects to compile
	// fetchKernel, fetchSource, prepareTree, makeWorkDir
	kernel   *kpkg.Kernel
	pristine string // the distribution's source, "" with Options.Source
	tree     *Tree
	work     string
	// compile
	pairs []ObjectPair
	// readSymbols
	vmsyms  *elfdiff.Symtab
	buildID string
	symvers Symvers
	// diff
	vmCode  shippedCode       // the shipped vmlinux's code, read once when needed
	adds    []map[string]bool // per pair: global functions the fix adds
	calls   []map[string]bool // per pair: symbols the patched object leaves undefined
	objects map[string][]byte // patchN.o: the changed functions of pair N
	owners  map[string]string // section → the object (vmlinux or a module) its code patches
	// link
	desc string
}

// newBuilder checks opts and fills in the defaults.
func newBuilder(opts Options) (*builder, error) {
	if opts.Kernel == "" {
		return nil, errors.New("build: no kernel release given (--kernel, e.g. 6.1.0-56-amd64)")
	}
	if len(opts.Patches) == 0 {
		return nil, errors.New("build: no fix given (--patch FILE)")
	}
	b := &builder{opts: opts, progress: opts.Progress, cache: opts.Cache, fetch: opts.Fetch, name: opts.Name, res: &Result{}}
	if b.progress == nil {
		b.progress = io.Discard
	}
	if b.cache == "" {
		var err error
		if b.cache, err = kpkg.CacheDir(); err != nil {
			return nil, err
		}
	}
	if b.fetch == nil {
		b.fetch = kpkg.Fetch
	}
	if b.name == "" {
		b.name = DefaultName(opts.Patches[0])
	}
	if len(b.name) > 55 || !reModuleName.MatchString(b.name) {
		return nil, fmt.Errorf("build: name %q: a module name is 1 to 55 letters, digits and _", b.name)
	}
	// A bad key fails now, not after the build.
	if opts.Key != nil && len(opts.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("build: signing key is %d bytes, want an ed25519 private key of %d", len(opts.Key), ed25519.PrivateKeySize)
	}
	return b, nil
}

// timed runs one step, recording its time in the result and the progress.
func (b *builder) timed(ctx context.Context, name string, step func(context.Context) error) error {
	start := time.Now()
	if err := step(ctx); err != nil {
		return err
	}
	d := time.Since(start)
	b.res.Steps = append(b.res.Steps, Step{Name: name, Duration: d})
	fmt.Fprintf(b.progress, "[%s] done in %.1fs\n", name, d.Seconds())
	return nil
}

// readFix reads and parses the fix files and picks the objects to
// compile: a bad patch file fails before any download.
func (b *builder) readFix() error {
	for _, p := range b.opts.Patches {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read fix: %w", err)
		}
		c, err := ParsePatch(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		b.patchData = append(b.patchData, data...)
		b.changes = append(b.changes, c...)
	}
	objs, warns, err := objectsFor(b.changes, b.opts.Objects)
	if err != nil {
		return err
	}
	b.objs = objs
	b.res.Warnings = append(b.res.Warnings, warns...)
	b.patches = make([]string, len(b.opts.Patches))
	for i, p := range b.opts.Patches {
		if b.patches[i], err = filepath.Abs(p); err != nil {
			return err
		}
	}
	return nil
}

// fetchKernel gets the kernel's packages (image, headers, modules).
func (b *builder) fetchKernel(ctx context.Context) error {
	fmt.Fprintf(b.progress, "[kernel] %s packages\n", b.opts.Kernel)
	k, err := b.fetch(ctx, b.opts.Kernel, b.progress)
	if err != nil {
		return fmt.Errorf("get kernel %s: %w", b.opts.Kernel, err)
	}
	b.kernel = k
	return nil
}

// fetchSource gets the distribution's source of the kernel; not run with
// Options.Source.
func (b *builder) fetchSource(ctx context.Context) error {
	fmt.Fprintf(b.progress, "[source] linux-source %s\n", b.kernel.PackageVersion)
	var err error
	b.pristine, err = Source(ctx, b.cache, b.kernel.PackageVersion, b.progress)
	return err
}

// prepareTree configures the source for the kernel (modules_prepare).
func (b *builder) prepareTree(ctx context.Context) error {
	fmt.Fprintf(b.progress, "[prepare] kernel tree for %s\n", b.kernel.Release)
	tree, err := PrepareTree(ctx, b.cache, b.pristine, b.opts.Source, b.kernel.Release, b.kernel.Config, b.progress)
	if err != nil {
		return fmt.Errorf("prepare the kernel tree: %w", err)
	}
	b.tree = tree
	return nil
}

// makeWorkDir makes the build's own folder for objects and the module.
func (b *builder) makeWorkDir() error {
	work := filepath.Join(b.cache, "work", fmt.Sprintf("%s-%s", b.name, time.Now().UTC().Format("20060102T150405.000000000")))
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	b.work, b.res.WorkDir = work, work
	return nil
}

// compile compiles the objects the fix touches before and after applying
// it.
func (b *builder) compile(ctx context.Context) error {
	fmt.Fprintf(b.progress, "[compile] %s\n", strings.Join(b.objs, " "))
	fix := Fix{Patches: b.patches, Changes: b.changes, AllowFuzz: b.opts.AllowFuzz}
	if usesHeader(b.patchData) {
		fix.Files = map[string][]byte{HeaderPath: Header}
	}
	pairs, hunks, err := b.tree.Compile(ctx, b.cache, fix, b.objs, b.work, b.progress)
	if err != nil {
		return err
	}
	b.pairs = pairs
	b.res.Objects, b.res.Hunks = pairs, hunks
	for _, h := range hunks {
		b.res.Warnings = append(b.res.Warnings, h.String())
	}
	return nil
}

// readSymbols reads the kernel's symbol table and exports.
func (b *builder) readSymbols(ctx context.Context) error {
	fmt.Fprintln(b.progress, "[symbols] kallsyms, Module.symvers, module symbol tables")
	var err error
	b.vmsyms, b.buildID, err = KernelSymbols(ctx, b.kernel.Vmlinuz, filepath.Join(b.cache, "build", b.kernel.Release))
	if err != nil {
		return fmt.Errorf("read the kernel's symbols: %w", err)
	}
	if b.symvers, err = ReadSymvers(filepath.Join(b.kernel.HeadersDir, "Module.symvers")); err != nil {
		return fmt.Errorf("read the kernel's exports: %w", err)
	}
	return nil
}

// diff compares each pair of objects, checks that the originals are the
// code the distribution shipped, and keeps the changed functions; it fails
// with every refusal of every pair at once, or when nothing changed.
func (b *builder) diff(ctx context.Context) error {
	fmt.Fprintln(b.progress, "[diff] comparing objects")
	b.objects, b.owners = map[string][]byte{}, map[string]string{}
	if err := b.crossFileGlobals(); err != nil {
		return err
	}
	var refusals []elfdiff.Refusal
	for i, p := range b.pairs {
		refused, err := b.diffPair(ctx, i, p)
		if err != nil {
			return err
		}
		refusals = append(refusals, refused...)
	}
	refusals = append(refusals, callbackClashes(b.res.Callbacks)...)
	if len(refusals) > 0 {
		return &elfdiff.RefusedError{Refusals: refusals}
	}
	res := b.res
	if len(res.Funcs) == 0 {
		msg := "the fix changes no function's code"
		if len(res.LineOnly) > 0 {
			msg += " (only __LINE__ numbers moved in " + strings.Join(res.LineOnly, ", ") + ")"
		}
		if len(res.Callbacks) > 0 {
			// A bundle's manifest lists the functions it replaces, at
			// least one.
			msg += " (callbacks alone are not a live patch: the fix must also replace a function)"
		}
		return fmt.Errorf("build: %s: nothing to live patch", msg)
	}
	return checkCumulative(b.opts.Cumulative, b.kernel.Release, res.Funcs)
}

// crossFileGlobals finds the global functions the fix adds to each file
// (defined in its patched object, not in its original) and the symbols
// each patched object leaves undefined: a function one file adds and
// another calls is carried by the first (elfdiff.Options.Export) and
// reached by the second through the module link (Options.Provided), not
// looked up in the running kernel.
func (b *builder) crossFileGlobals() error {
	b.adds = make([]map[string]bool, len(b.pairs))
	b.calls = make([]map[string]bool, len(b.pairs))
	for i, p := range b.pairs {
		orig, err := readObject(p.Orig)
		if err != nil {
			return err
		}
		patched, err := readObject(p.Patched)
		if err != nil {
			return err
		}
		had := map[string]bool{}
		for _, s := range orig.Symbols[1:] {
			if s.Section != nil && s.Bind != elf.STB_LOCAL {
				had[s.Name] = true
			}
		}
		b.adds[i], b.calls[i] = map[string]bool{}, map[string]bool{}
		for _, s := range patched.Symbols[1:] {
			switch {
			case s.Section != nil && s.Bind == elf.STB_GLOBAL && s.Type == elf.STT_FUNC && !had[s.Name]:
				b.adds[i][s.Name] = true
			case s.Section == nil && s.Shndx == elf.SHN_UNDEF && s.Name != "":
				b.calls[i][s.Name] = true
			}
		}
	}
	return nil
}

// callbackClashes refuses two callbacks of one kind for one object from
// different files of the fix (elfdiff refuses them within one file): the
// kernel's klp_object has one of each.
func callbackClashes(cbs []elfdiff.Callback) []elfdiff.Refusal {
	seen := map[[2]string]elfdiff.Callback{}
	var out []elfdiff.Refusal
	for _, c := range cbs {
		k := [2]string{c.Object, c.Kind}
		if first, ok := seen[k]; ok {
			out = append(out, elfdiff.Refusal{Rule: elfdiff.RuleCallback, File: c.File, Symbol: c.Func,
				Reason:  fmt.Sprintf("%s and %s are both %s callbacks of %s, which has one", first.Func+" ("+first.File+")", c.Func+" ("+c.File+")", c.Kind, c.Object),
				Suggest: "the kernel runs one callback of each kind per patched object: call the others from one function and register that one"})
			continue
		}
		seen[k] = c
	}
	return out
}

// elsewhere reports whether a pair other than i has name in sets.
func elsewhere(sets []map[string]bool, i int, name string) bool {
	for j, m := range sets {
		if j != i && m[name] {
			return true
		}
	}
	return false
}

// diffPair compares pair i, returning why the differ refused it, if it did.
func (b *builder) diffPair(ctx context.Context, i int, p ObjectPair) ([]elfdiff.Refusal, error) {
	res := b.res
	symtab := b.vmsyms
	var koPath string
	if p.Target != "vmlinux" {
		var err error
		if symtab, koPath, err = ModuleSymbols(b.kernel.ModulesDir, p.Target, p.ModFile); err != nil {
			return nil, err
		}
	}
	dopts := elfdiff.Options{Object: p.Target, File: p.Source, Symtab: symtab, Exported: b.symvers.Exported, Prefix: fmt.Sprint(i),
		Provided: func(n string) bool { return elsewhere(b.adds, i, n) },
		Export:   func(n string) bool { return b.adds[i][n] && elsewhere(b.calls, i, n) }}
	if b.opts.Force != nil {
		src, force := p.Source, b.opts.Force
		dopts.Force = func(fn string) bool { return force(src, fn) }
	}
	r, err := diffPair(p, dopts)
	var re *elfdiff.RefusedError
	if errors.As(err, &re) {
		return re.Refusals, nil
	}
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, r.Warnings...)
	res.LineOnly = append(res.LineOnly, r.LineOnly...)
	res.New = append(res.New, r.New...)
	res.Data = append(res.Data, r.Data...)
	res.Callbacks = append(res.Callbacks, r.Callbacks...)
	for _, c := range r.Callbacks {
		fmt.Fprintf(b.progress, "[diff] %s: %s is the %s callback of %s\n", p.Source, c.Func, c.Kind, c.Object)
	}
	for _, f := range r.Funcs {
		fmt.Fprintf(b.progress, "[diff] %s: %s changed (%s, sympos %d)\n", p.Source, f.Name, f.Object, f.Sympos)
	}
	if !b.opts.NoVerify && len(r.Funcs) > 0 {
		if err := b.verify(ctx, p, koPath, r.Funcs); err != nil {
			return nil, err
		}
	}
	if r.Object == nil {
		return nil, nil
	}
	out, err := elfdiff.Write(r.Object)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Source, err)
	}
	b.objects[fmt.Sprintf("patch%d.o", i)] = out
	for _, s := range r.Sections {
		if o, ok := b.owners[s]; ok && o != p.Target {
			return nil, fmt.Errorf("section %s holds code for both %s and %s: build the two fixes separately", s, o, p.Target)
		}
		b.owners[s] = p.Target
	}
	res.Funcs = append(res.Funcs, r.Funcs...)
	return nil, nil
}

// verify checks that the functions funcs replace, as compiled here from
// the unpatched source, are the code the distribution shipped: in vmlinux,
// or in the module at koPath.
func (b *builder) verify(ctx context.Context, p ObjectPair, koPath string, funcs []elfdiff.Func) error {
	code := b.vmCode
	if p.Target == "vmlinux" && code == nil {
		vml, err := Vmlinux(ctx, b.kernel.Vmlinuz, filepath.Join(b.cache, "build", b.kernel.Release, "vmlinux"))
		if err != nil {
			return err
		}
		if b.vmCode, err = vmlinuxCode(vml, b.vmsyms); err != nil {
			return err
		}
		code = b.vmCode
	} else if p.Target != "vmlinux" {
		data, err := os.ReadFile(koPath)
		if err != nil {
			return err
		}
		ko, err := elfdiff.Read(data)
		if err != nil {
			return fmt.Errorf("%s: %w", koPath, err)
		}
		code = moduleCode(ko, p.Source)
	}
	orig, err := readObject(p.Orig)
	if err != nil {
		return err
	}
	if err := verifyOriginals(orig, funcs, code); err != nil {
		return fmt.Errorf("%s: %w", p.Source, err)
	}
	return nil
}

// link generates the klp_patch description and links the module against
// the kernel's headers.
func (b *builder) link(ctx context.Context) error {
	fmt.Fprintf(b.progress, "[link] %s.ko against %s\n", b.name, b.kernel.HeadersDir)
	b.desc = b.opts.Description
	if b.desc == "" {
		var bases []string
		for _, p := range b.opts.Patches {
			bases = append(bases, filepath.Base(p))
		}
		b.desc = "Live patch built by stent from " + strings.Join(bases, ", ")
	}
	module, csrc, err := LinkModule(ctx, filepath.Join(b.work, "module"), b.kernel.HeadersDir, b.tree.CC, b.name, b.desc, !b.opts.NoReplace, b.objects, b.res.Funcs, b.res.Callbacks, b.owners)
	if err != nil {
		return err
	}
	b.res.Module, b.res.CSource = module, csrc
	return nil
}

// makeManifest describes the module for the bundle.
func (b *builder) makeManifest() {
	opts, k := b.opts, b.kernel
	sum := sha256.Sum256(b.patchData)
	m := &bundle.Manifest{
		FormatVersion: bundle.FormatVersion,
		Name:          b.name,
		Kernel:        bundle.Kernel{Release: k.Release, BuildID: b.buildID, PackageVersion: k.PackageVersion},
		Level:         1,
		Replace:       !opts.NoReplace,
		CVEs:          cveUnion(opts.CVEs, opts.Cumulative),
		Description:   b.desc,
		Created:       time.Now().UTC().Truncate(time.Second),
		SourceSHA256:  hex.EncodeToString(sum[:]),
	}
	if opts.Cumulative != nil {
		m.Level = opts.Cumulative.Level + 1
	}
	if opts.Effective != "" {
		m.Effective = &bundle.Effective{PackageVersion: opts.Effective}
	}
	msum := sha256.Sum256(b.res.Module)
	m.ModuleSHA256, m.ModuleSize = hex.EncodeToString(msum[:]), int64(len(b.res.Module))
	for _, f := range b.res.Funcs {
		m.Functions = append(m.Functions, bundle.Function{Object: f.Object, Name: f.Name, Sympos: int64(f.Sympos)})
	}
	b.res.Manifest = m
}

// sign makes the signed bundle of the module and its manifest, when a key
// was given.
func (b *builder) sign() error {
	if b.opts.Key == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := bundle.Create(&buf, b.res.Manifest, b.res.Module, b.opts.Key); err != nil {
		return err
	}
	pub, _ := b.opts.Key.Public().(ed25519.PublicKey)
	b.res.Bundle, b.res.KeyID = buf.Bytes(), bundle.KeyIDOf(pub)
	return nil
}
