package elfdiff

import (
	"debug/elf"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
)

// Options describes the object file being diffed.
type Options struct {
	// Object is the livepatch object the file belongs to: "vmlinux" or the
	// name of the module it is linked into.
	Object string
	// File is the source file, as named in the kernel tree (messages and
	// symbol disambiguation).
	File string
	// Symtab is the symbol table of Object (kallsyms order for vmlinux, the
	// .ko's for a module).
	Symtab *Symtab
	// Exported reports whether a symbol is exported (Module.symvers) and by
	// which object: "vmlinux" or a module name.
	Exported func(name string) (owner string, ok bool)
	// Prefix makes the global symbols this diff adds unique when several
	// files are linked into one module.
	Prefix string
	// Provided reports whether another object of the same live patch
	// defines the named global anew (a function the fix adds to another
	// patched file): carried code reaches it as an ordinary undefined
	// symbol, which the module link resolves, not in the running kernel.
	Provided func(name string) bool
	// Export reports whether a global function this object adds is
	// called from another object of the same live patch: it is carried
	// even if nothing here calls it, under its own global name.
	Export func(name string) bool
	// Force makes Diff carry the named functions as if they had changed,
	// leaving out those a live patch cannot replace. Tests use it to run
	// the extraction over every function of real objects.
	Force func(name string) bool
}

// Func is one function the patch replaces.
type Func struct {
	Name    string `json:"name"`   // the function's name in the running kernel
	Object  string `json:"object"` // "vmlinux" or a module name
	Sympos  int    `json:"sympos"` // livepatch old_sympos: 0 when unique
	NewName string `json:"-"`      // global symbol of the new code in Result.Object
	File    string `json:"file"`
}

// Result is the outcome of Diff.
type Result struct {
	Object   *File    // extracted functions and what they need; nil if nothing changed
	Funcs    []Func   // functions replaced
	New      []string // new functions carried along
	Data     []string // new or per-call-site data carried along
	LineOnly []string // functions whose only change is a __LINE__ number
	// Callbacks the fix registers with stent/livepatch.h, carried in Object.
	Callbacks []Callback
	Warnings  []string
	// Sections names the sections of Object holding code, for
	// ConvertModule's owners.
	Sections []string
}

// differ holds the state of one Diff.
type differ struct {
	o, p  *object
	opts  Options
	twin  map[*Symbol]*Symbol // patched -> original
	depth int

	refusals []Refusal
	warnings []string
}

func (d *differ) refuse(rule Rule, sym, reason, suggest string) {
	d.refusals = append(d.refusals, Refusal{Rule: rule, File: d.opts.File, Symbol: sym, Reason: reason, Suggest: suggest})
}

// Diff compares the original and patched objects compiled from one source
// file and extracts what a live patch needs. It returns a *RefusedError
// (wrapping ErrRefused) when the fix cannot be live patched safely.
func Diff(orig, patched *File, opts Options) (res *Result, err error) {
	// Not a guard around debug/elf (the objects are parsed already, and
	// the DWARF read here goes through safeelf): a panic here is a bug in
	// the differ, reported as one instead of ending the build.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("diff %s: internal error: %v\n%s", opts.File, r, firstLines(debug.Stack(), 16))
			res = nil
		}
	}()
	if opts.Object == "" {
		opts.Object = "vmlinux"
	}
	if opts.Exported == nil {
		opts.Exported = func(string) (string, bool) { return "", false }
	}
	if opts.Provided == nil {
		opts.Provided = func(string) bool { return false }
	}
	if opts.Export == nil {
		opts.Export = func(string) bool { return false }
	}
	d := &differ{o: index(orig), p: index(patched), opts: opts}
	d.twin = correlate(d.o, d.p)
	d.correlateByContent()
	d.correlateObjectsByContent()
	return d.run()
}

// correlateByContent pairs the compiler-numbered functions correlate left
// alone because a stem had different counts on the two sides (a fix that
// makes GCC clone a function once more renumbers the existing clone): an
// unmatched patched function pairs with the unmatched original of the same
// stem whose code and relocations compare equal.
func (d *differ) correlateByContent() {
	used := map[*Symbol]bool{}
	for _, o := range d.twin {
		used[o] = true
	}
	group := func(f *File, skip func(*Symbol) bool) map[string][]*Symbol {
		m := map[string][]*Symbol{}
		for _, s := range f.Symbols[1:] {
			if s.Section != nil && s.Type == elf.STT_FUNC && !skip(s) {
				m[stripNumbers(s.Name)] = append(m[stripNumbers(s.Name)], s)
			}
		}
		return m
	}
	ps := group(d.p.f, func(s *Symbol) bool { return d.twin[s] != nil })
	os := group(d.o.f, func(s *Symbol) bool { return used[s] })
	keys := make([]string, 0, len(ps))
	for k := range ps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pair := func(ok func(p, o *Symbol) bool) {
			for _, p := range ps[k] {
				if d.twin[p] != nil {
					continue
				}
				for _, o := range os[k] {
					if !used[o] && ok(p, o) {
						d.twin[p] = o
						used[o] = true
						break
					}
				}
			}
		}
		// Equal code first, then equal names, then the one left on each
		// side.
		pair(func(p, o *Symbol) bool { return d.compareFunc(p, o) != changed })
		pair(func(p, o *Symbol) bool { return p.Name == o.Name })
		var lp, lo []*Symbol
		for _, p := range ps[k] {
			if d.twin[p] == nil {
				lp = append(lp, p)
			}
		}
		for _, o := range os[k] {
			if !used[o] {
				lo = append(lo, o)
			}
		}
		if len(lp) == 1 && len(lo) == 1 {
			d.twin[lp[0]] = lo[0]
			used[lo[0]] = true
		}
	}
}

// correlateObjectsByContent pairs the static objects correlate left alone
// because several of one stem share their users: a function printing two
// tables (__print_symbolic's symbols.N), whose numbers all move when a
// table is added below them. A patched object pairs with an unpaired
// original of its stem, used by the twins of its users, whose contents
// (size, bytes, what its relocations reach) are equal: first the one its
// users' twins reference at the same place, then the one of the same name,
// then the first. An object whose contents changed stays unpaired, as
// before (new data for the code that uses it).
func (d *differ) correlateObjectsByContent() {
	used := map[*Symbol]bool{}
	for _, o := range d.twin {
		used[o] = true
	}
	var ps, os []*Symbol
	for _, s := range d.p.f.Symbols[1:] {
		if s.Section != nil && s.Type == elf.STT_OBJECT && d.twin[s] == nil {
			ps = append(ps, s)
		}
	}
	for _, s := range d.o.f.Symbols[1:] {
		if s.Section != nil && s.Type == elf.STT_OBJECT && !used[s] {
			os = append(os, s)
		}
	}
	for _, p := range ps {
		var cands []*Symbol
		for _, o := range os {
			if !used[o] && stripNumbers(o.Name) == stripNumbers(p.Name) && o.Bind == p.Bind &&
				sameUsers(d.p, d.o, d.twin, p, o) && d.compareData(p, o) {
				cands = append(cands, o)
			}
		}
		if len(cands) == 0 {
			continue
		}
		best := cands[0]
		for _, o := range cands {
			if d.sameRefSites(p, o) {
				best = o
				break
			}
			if o.Name == p.Name && best.Name != p.Name {
				best = o
			}
		}
		d.twin[p] = best
		used[best] = true
	}
}

// sameRefSites reports whether some user of p references it at the same
// offset of its code as that user's twin references o.
func (d *differ) sameRefSites(p, o *Symbol) bool {
	for _, u := range d.p.users[p] {
		t := d.twin[u]
		if t == nil {
			continue
		}
		for _, rp := range d.p.relocsOf(u) {
			if tp, _ := d.p.target(u.Section, rp); tp != p {
				continue
			}
			for _, ro := range d.o.relocsOf(t) {
				if to, _ := d.o.target(t.Section, ro); to == o && ro.Offset-t.Value == rp.Offset-u.Value {
					return true
				}
			}
		}
	}
	return false
}

func isInit(s *Section) bool {
	return s != nil && (strings.HasPrefix(s.Name, ".init.") || strings.HasPrefix(s.Name, ".meminit."))
}

func isExit(s *Section) bool { return s != nil && strings.HasPrefix(s.Name, ".exit.") }

func (d *differ) run() (*Result, error) {
	res := &Result{}
	changedFn := map[*Symbol]bool{}
	var funcs, objs []*Symbol
	for _, s := range d.p.f.Symbols[1:] {
		if s.Section == nil {
			continue
		}
		switch s.Type {
		case elf.STT_FUNC:
			funcs = append(funcs, s)
		case elf.STT_OBJECT:
			objs = append(objs, s)
		}
	}
	// Functions.
	for _, p := range funcs {
		o := d.twin[p]
		if o == nil {
			if isInit(p.Section) {
				d.refuse(RuleInitChanged, p.Name, "the fix adds __init function "+p.Name, suggestInit)
			}
			continue
		}
		c := d.compareFunc(p, o)
		switch {
		case c == lineOnly:
			res.LineOnly = append(res.LineOnly, p.Name)
		case c == changed && isInit(p.Section):
			d.refuse(RuleInitChanged, p.Name, "the fix changes __init function "+p.Name, suggestInit)
		case c == changed && isExit(p.Section):
			d.warnings = append(d.warnings, fmt.Sprintf("%s: change to __exit function %s ignored (it only runs when the module unloads)", d.opts.File, p.Name))
		case c == changed:
			changedFn[p] = true
		}
	}
	if d.opts.Force != nil {
		for _, p := range funcs {
			if d.twin[p] != nil && !isInit(p.Section) && !isExit(p.Section) && d.p.parent[p] == nil &&
				d.p.hasFentry(p) && d.opts.Force(p.Name) {
				changedFn[p] = true
			}
		}
	}
	// A __weak definition matters only if the kernel runs it rather than a
	// strong one from another file.
	for p := range changedFn {
		if p.Bind == elf.STB_WEAK && d.opts.Symtab != nil && d.opts.Symtab.Overridden(p.Name, d.neighbours()) {
			delete(changedFn, p)
			d.warnings = append(d.warnings, fmt.Sprintf("%s: change to __weak %s ignored: the running kernel uses another file's definition", d.opts.File, p.Name))
		}
	}
	// A changed .cold part changes its parent.
	for p := range changedFn {
		if parent := d.p.parent[p]; parent != nil {
			changedFn[parent] = true
		}
	}
	// Data.
	constChanged := map[*Symbol]bool{}
	for _, p := range objs {
		o := d.twin[p]
		if o == nil || isFreshStatic(p) || d.compareData(p, o) {
			continue
		}
		switch {
		case isInit(p.Section):
			d.refuse(RuleInitChanged, p.Name, "the fix changes __initdata "+p.Name, suggestInit)
		case p.Section.Flags&elf.SHF_WRITE == 0 && p.Section.Type != elf.SHT_NOBITS && !strings.HasPrefix(p.Section.Name, "__ksymtab"):
			// Constant data: the changed functions get their own copy.
			constChanged[p] = true
			var nonFunc []string
			for _, u := range d.p.users[p] {
				if u.Type == elf.STT_FUNC {
					changedFn[u] = true
				} else {
					nonFunc = append(nonFunc, u.Name)
				}
			}
			if len(nonFunc) > 0 {
				d.refuse(RuleDataChanged, p.Name, fmt.Sprintf("the fix changes constant %s, which data (%s) points at", p.Name, strings.Join(nonFunc, ", ")), suggestShadow)
			}
		default:
			what := "initial value"
			if p.Size != o.Size {
				what = fmt.Sprintf("size (%d to %d bytes)", o.Size, p.Size)
			}
			d.refuse(RuleDataChanged, p.Name, fmt.Sprintf("the fix changes the %s of %s %s, which the running kernel already holds", what, bindWord(p.Bind != elf.STB_LOCAL), p.Name), suggestShadow)
		}
	}
	d.checkGroups()
	d.checkExports()
	if len(changedFn) > 0 {
		d.checkLayouts()
	}

	// Functions that cannot be redirected.
	var roots []*Symbol
	for p := range changedFn {
		if d.p.parent[p] != nil {
			continue // .cold parts follow their parent
		}
		roots = append(roots, p)
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].Name < roots[j].Name })
	for _, p := range roots {
		if d.p.hasFentry(p) {
			continue
		}
		if call, ok := syscallBody(p.Name); ok {
			d.refuse(RuleNoFtrace, p.Name, fmt.Sprintf("function %s, the body of syscall %s, changed: the kernel's SYSCALL_DEFINEn makes it inline, so notrace, and the compiler kept it out of line, where ftrace cannot redirect it", p.Name, call), suggestSyscall(call))
			continue
		}
		d.refuse(RuleNoFtrace, p.Name, fmt.Sprintf("function %s changed but has no ftrace entry (no call to __fentry__: notrace, or built without -pg)", p.Name), suggestNoFtrace)
	}
	// New global functions other patched objects call.
	var exports []*Symbol
	for _, p := range funcs {
		if d.twin[p] == nil && p.Bind == elf.STB_GLOBAL && d.p.parent[p] == nil && !isInit(p.Section) && d.opts.Export(p.Name) {
			exports = append(exports, p)
		}
	}
	// Callbacks the fix registers (stent/livepatch.h): carried, each
	// under a global name for the generated klp_callbacks.
	cbs := d.callbacks()
	if len(d.refusals) > 0 {
		return nil, &RefusedError{Refusals: d.refusals}
	}
	if len(roots) == 0 && len(exports) == 0 && len(cbs) == 0 {
		res.Warnings = d.warnings
		return res, nil
	}
	b := newBuilder(d, changedFn, constChanged)
	carry := append(slices.Clone(roots), exports...)
	for _, c := range cbs {
		carry = append(carry, c.fn)
	}
	if err := b.build(carry); err != nil {
		return nil, err
	}
	for _, p := range exports {
		b.alias(p, p.Name)
	}
	for _, c := range cbs {
		name := fmt.Sprintf("__stent_%s_%s", d.opts.Prefix, c.kind)
		b.alias(c.fn, name)
		res.Callbacks = append(res.Callbacks, Callback{Kind: c.kind, Object: d.opts.Object, Func: c.fn.Name, File: d.opts.File, NewName: name})
	}
	if len(d.refusals) > 0 {
		return nil, &RefusedError{Refusals: d.refusals}
	}
	res.Object = b.out
	for i, p := range roots {
		o := d.twin[p]
		pos, err := d.position(o)
		if err != nil {
			return nil, fmt.Errorf("%s: patched function %s: %w", d.opts.File, o.Name, err)
		}
		name := fmt.Sprintf("__stent_%s_new_%d", d.opts.Prefix, i)
		b.alias(p, name)
		res.Funcs = append(res.Funcs, Func{Name: o.Name, Object: d.opts.Object, Sympos: pos, NewName: name, File: d.opts.File})
	}
	for _, s := range b.out.Sections[1:] {
		if s.Flags&elf.SHF_EXECINSTR != 0 {
			res.Sections = append(res.Sections, s.Name)
		}
	}
	res.New = b.newFuncs
	res.Data = b.newData
	res.Warnings = append(d.warnings, b.warnings...)
	return res, nil
}

// neighbours returns the names of the functions and objects the original
// object defines, used to tell same-named static symbols apart.
func (d *differ) neighbours() []string {
	var out []string
	for _, s := range d.o.f.Symbols[1:] {
		// __weak definitions may be another file's in the kernel: they
		// say nothing about where this file's symbols are.
		if s.Section != nil && (s.Type == elf.STT_FUNC || s.Type == elf.STT_OBJECT) && s.Section.Flags&elf.SHF_ALLOC != 0 && s.Bind != elf.STB_WEAK {
			out = append(out, s.Name)
		}
	}
	return out
}

// position returns the livepatch symbol position of original symbol o in
// the target object.
func (d *differ) position(o *Symbol) (int, error) {
	if d.opts.Symtab == nil {
		return 0, fmt.Errorf("no symbol table for %s", d.opts.Object)
	}
	return d.opts.Symtab.Position(o.Name, o.Bind != elf.STB_LOCAL, d.opts.File, d.neighbours())
}

// checkGroups refuses changed COMDAT groups: their members are shared with
// other objects and the kernel keeps a single copy.
func (d *differ) checkGroups() {
	for _, g := range d.p.f.Sections[1:] {
		if g.Type != elf.SHT_GROUP {
			continue
		}
		sig := ""
		if g.Signature != nil {
			sig = g.Signature.Name
		}
		var og *Section
		for _, s := range d.o.f.Sections[1:] {
			if s.Type == elf.SHT_GROUP && s.Signature != nil && s.Signature.Name == sig {
				og = s
			}
		}
		same := og != nil && len(og.Group) == len(g.Group)
		for i := 0; same && i < len(g.Group); i++ {
			a, b := g.Group[i], og.Group[i]
			same = a.Name == b.Name && a.Size == b.Size && string(a.Data) == string(b.Data) && d.sameRelocs(a, b, 0, 0, a.Size)
		}
		if !same {
			d.refuse(RuleComdat, sig, "the fix changes COMDAT group "+sig+", whose members the kernel shares between objects", suggestReboot)
		}
	}
}

// checkExports refuses new or removed exports: a live patch cannot change
// the kernel's export tables.
func (d *differ) checkExports() {
	exports := func(f *File) map[string]bool {
		m := map[string]bool{}
		for _, s := range f.Symbols[1:] {
			if strings.HasPrefix(s.Name, "__ksymtab_") && s.Section != nil {
				m[strings.TrimPrefix(s.Name, "__ksymtab_")] = true
			}
		}
		return m
	}
	eo, ep := exports(d.o.f), exports(d.p.f)
	for n := range ep {
		if !eo[n] {
			d.refuse(RuleExportChanged, n, "the fix exports "+n+", and a live patch cannot add to the kernel's export table", "call the symbol through a livepatch relocation instead of exporting it, or reboot into a fixed kernel")
		}
	}
}
