package elfdiff

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/testenv"
)

// cflags are the code-generation flags the kernel uses on x86-64 that
// matter to elfdiff, plus the builder's function and data sections.
var cflags = []string{
	"-O2", "-c", "-ffunction-sections", "-fdata-sections", "-pg", "-mfentry", "-mrecord-mcount",
	"-mcmodel=kernel", "-fno-pic", "-fno-asynchronous-unwind-tables", "-mno-red-zone",
	"-fno-stack-protector", "-fno-jump-tables", "-fno-strict-aliasing", "-w",
}

// symtabOf makes a kallsyms-like table of an object's functions and data,
// plus extra entries.
func symtabOf(f *File, extra ...KSym) *Symtab {
	t := &Symtab{Object: "vmlinux"}
	addr := uint64(0xffffffff81000000)
	for _, s := range f.Symbols[1:] {
		if s.Section == nil || (s.Type != elf.STT_FUNC && s.Type != elf.STT_OBJECT) {
			continue
		}
		typ := byte('t')
		if s.Type == elf.STT_OBJECT {
			typ = 'd'
		}
		if s.Bind != elf.STB_LOCAL {
			typ -= 'a' - 'A'
		}
		addr += 0x40
		t.Syms = append(t.Syms, KSym{Name: s.Name, Addr: addr, Type: typ})
	}
	t.Syms = append(t.Syms, extra...)
	return t
}

var exported = map[string]bool{"printk": true, "__fentry__": true, "sink": true, "__might_sleep": true}

func opts(orig *File, extra ...KSym) Options {
	return Options{
		Object: "vmlinux", File: "test.c", Symtab: symtabOf(orig, extra...), Prefix: "t",
		Exported: func(n string) (string, bool) { return "vmlinux", exported[n] },
	}
}

func funcNames(r *Result) []string {
	var out []string
	for _, f := range r.Funcs {
		out = append(out, f.Name)
	}
	sort.Strings(out)
	return out
}

// outSyms lists the undefined symbols the output object references, and
// the sections it has.
func outSyms(f *File) (undef []string, sections []string) {
	for _, s := range f.Symbols[1:] {
		if s.Section == nil && s.Type != elf.STT_SECTION {
			undef = append(undef, s.Name)
		}
	}
	for _, s := range f.Sections[1:] {
		sections = append(sections, s.Name)
	}
	sort.Strings(undef)
	return undef, sections
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name      string
		extra     []KSym
		funcs     []string // replaced functions
		newFuncs  []string
		lineOnly  []string
		undef     []string // must be among the output's undefined symbols
		notUndef  []string // must not be
		sections  []string // must be among the output's sections
		entries   map[string]int
		refused   Rule
		refusedOn string
	}{
		{name: "changed", funcs: []string{"value"}, sections: []string{".text.value", "__mcount_loc"}},
		{name: "isra", funcs: []string{"user"}, newFuncs: []string{"helper.isra.0"},
			// The renumbered, unchanged clone is reached in the running
			// kernel under its original name.
			undef: []string{".klp.sym.vmlinux.helper.isra.0,0"}, notUndef: []string{".klp.sym.vmlinux.helper.isra.1,0"}},
		{name: "static_local", funcs: []string{"counter"},
			undef: []string{".klp.sym.vmlinux.count.0,0"}},
		{name: "new_func", funcs: []string{"handle"}, newFuncs: []string{"check"}, sections: []string{".text.check"}},
		{name: "string", funcs: []string{"report"}},
		{name: "line", lineOnly: []string{"warned"}},
		{name: "line_const", extra: []KSym{{Name: "set_limit", Type: 'T'}}, funcs: []string{"limited"}},
		{name: "data", refused: RuleDataChanged, refusedOn: "limit"},
		{name: "static_moved", refused: RuleDataChanged, refusedOn: "calls"},
		{name: "init", refused: RuleInitChanged, refusedOn: "setup"},
		{name: "notrace", refused: RuleNoFtrace, refusedOn: "raw"},
		{name: "comdat", refused: RuleComdat, refusedOn: "shared"},
		{name: "jump_label", funcs: []string{"branchy"}, undef: []string{".klp.sym.vmlinux.feature_key,0"},
			entries: map[string]int{"__jump_table": 1}},
		{name: "bug_table", funcs: []string{"guarded"}, entries: map[string]int{"__bug_table": 1}},
		{name: "ex_table", funcs: []string{"peek"}, entries: map[string]int{"__ex_table": 1}},
		// Unchanged notrace functions using several static tables each,
		// some of equal contents, all renumbered: none changed (or the
		// build would refuse them as notrace).
		// Lines and a pr_debug added above functions with pr_debug: their
		// descriptors' line numbers and __UNIQUE_ID numbers move, the
		// functions do not change.
		{name: "dyndbg", extra: []KSym{{Name: "__dynamic_pr_debug", Type: 'T'}}, funcs: []string{"fixed"},
			sections: []string{"__dyndbg"}, entries: map[string]int{"__jump_table": 1}},
		{name: "tables", extra: []KSym{{Name: "print_symbols", Type: 'T'}, {Name: "seq_printf", Type: 'T'}}, funcs: []string{"report"}},
		// Two functions' static_cpu_has() fragments share .altinstr_aux:
		// the unchanged (notrace) one compares its own fragment only.
		{name: "altinstr_aux", extra: []KSym{{Name: "cpu_caps", Type: 'D'}, {Name: "slow_path", Type: 'T'}}, funcs: []string{"fixed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forPair(t, tt.name, false, func(t *testing.T, orig, patched *File) {
				res, err := Diff(orig, patched, opts(orig, tt.extra...))
				if tt.refused != "" {
					var re *RefusedError
					if !errors.As(err, &re) || !errors.Is(err, ErrRefused) {
						t.Fatalf("Diff(%s) = %v, want a refusal (%s)", tt.name, err, tt.refused)
					}
					found := false
					for _, r := range re.Refusals {
						if r.Rule == tt.refused && r.Symbol == tt.refusedOn && r.Suggest != "" {
							found = true
						}
					}
					if !found {
						t.Errorf("Diff(%s) refusals = %+v, want rule %s on %s", tt.name, re.Refusals, tt.refused, tt.refusedOn)
					}
					if !strings.Contains(err.Error(), tt.refusedOn) {
						t.Errorf("refusal message %q does not name %s", err, tt.refusedOn)
					}
					return
				}
				if err != nil {
					t.Fatalf("Diff(%s) = %v", tt.name, err)
				}
				if diff := cmp.Diff(tt.funcs, funcNames(res)); diff != "" {
					t.Errorf("Diff(%s) replaced functions (-want +got):\n%s", tt.name, diff)
				}
				if diff := cmp.Diff(tt.newFuncs, res.New); diff != "" {
					t.Errorf("Diff(%s) new functions (-want +got):\n%s", tt.name, diff)
				}
				if diff := cmp.Diff(tt.lineOnly, res.LineOnly); diff != "" {
					t.Errorf("Diff(%s) line-only functions (-want +got):\n%s", tt.name, diff)
				}
				if len(tt.funcs) == 0 {
					if res.Object != nil {
						t.Errorf("Diff(%s) made an object, want none", tt.name)
					}
					return
				}
				undef, secs := outSyms(res.Object)
				for _, u := range tt.undef {
					if !contains(undef, u) {
						t.Errorf("output undefined symbols = %v, want %s among them", undef, u)
					}
				}
				for _, u := range tt.notUndef {
					if contains(undef, u) {
						t.Errorf("output undefined symbols = %v, want no %s", undef, u)
					}
				}
				for _, s := range tt.sections {
					if !contains(secs, s) {
						t.Errorf("output sections = %v, want %s", secs, s)
					}
				}
				for sec, n := range tt.entries {
					s := res.Object.Section(sec)
					sp := specialOf(sec)
					if s == nil || int(s.Size)/sp.size != n {
						t.Errorf("output %s = %v, want %d entries", sec, s, n)
						continue
					}
					// Every entry's anchor reaches a carried function.
					for _, r := range s.Relocs {
						if int(r.Offset)%sp.size == sp.anchor && (r.Sym.Section == nil || r.Sym.Section.Flags&elf.SHF_EXECINSTR == 0) {
							t.Errorf("%s entry at %#x anchors to %s, not carried code", sec, r.Offset, r.Sym.Name)
						}
					}
				}
				checkWritable(t, res.Object)
				for _, f := range res.Funcs {
					if res.Object.Symbol(f.NewName) == nil {
						t.Errorf("output lacks the global %s for %s", f.NewName, f.Name)
					}
				}
			})
		})
	}
}

// checkWritable writes the output, reads it back with debug/elf and, when
// installed, readelf, and compares symbols.
func checkWritable(t *testing.T, f *File) {
	t.Helper()
	b, err := Write(f)
	if err != nil {
		t.Fatalf("Write = %v", err)
	}
	back, err := Read(b)
	if err != nil {
		t.Fatalf("Read(Write(out)) = %v", err)
	}
	if len(back.Symbols) != len(f.Symbols) {
		t.Errorf("symbols after a round trip = %d, want %d", len(back.Symbols), len(f.Symbols))
	}
	if testenv.HaveTools(t, "readelf") {
		p := filepath.Join(t.TempDir(), "out.o")
		os.WriteFile(p, b, 0o644)
		out, err := exec.Command("readelf", "-aW", p).CombinedOutput()
		if err != nil || strings.Contains(string(out), "Warning") || strings.Contains(string(out), "Error") {
			t.Errorf("readelf -a on the output: %v\n%s", err, out)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSympos(t *testing.T) {
	forPair(t, "static_local", false, func(t *testing.T, orig, patched *File) {
		// Two other files define a count.0 too; ours sits among the symbols
		// of our file.
		o := opts(orig)
		st := o.Symtab
		filler := func() (f []KSym) {
			for i := 0; i < 100; i++ {
				f = append(f, KSym{Name: "filler", Type: 't'})
			}
			return f
		}
		ours := st.Syms
		st.Syms = append(append([]KSym{{Name: "count.0", Type: 'd'}}, filler()...), ours...)
		st.Syms = append(append(st.Syms, filler()...), KSym{Name: "count.0", Type: 'd'})
		res, err := Diff(orig, patched, o)
		if err != nil {
			t.Fatal(err)
		}
		undef, _ := outSyms(res.Object)
		if !contains(undef, ".klp.sym.vmlinux.count.0,2") {
			t.Errorf("undefined symbols = %v, want .klp.sym.vmlinux.count.0,2 (the second of three)", undef)
		}
	})
}

func TestConvertModule(t *testing.T) {
	forPair(t, "static_local", false, func(t *testing.T, orig, patched *File) {
		res, err := Diff(orig, patched, opts(orig))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Write(res.Object)
		if err != nil {
			t.Fatal(err)
		}
		conv, marked, err := ConvertModule(b, nil)
		if err != nil {
			t.Fatalf("ConvertModule = %v", err)
		}
		if diff := cmp.Diff([]string{".klp.sym.vmlinux.count.0,0"}, marked); diff != "" {
			t.Errorf("marked (-want +got):\n%s", diff)
		}
		f, err := Read(conv)
		if err != nil {
			t.Fatal(err)
		}
		s := f.Section(".text.counter")
		if s == nil || len(s.KLPRelocs) == 0 || s.KLPObject != "vmlinux" {
			t.Fatalf(".text.counter after ConvertModule = %+v, want livepatch relocations for vmlinux", s)
		}
		for _, r := range s.Relocs {
			if strings.HasPrefix(r.Sym.Name, ".klp.sym.") {
				t.Errorf("ordinary relocation against %s left in .rela.text.counter", r.Sym.Name)
			}
		}
		for _, r := range s.KLPRelocs {
			if r.Sym.Shndx != SHN_LIVEPATCH {
				t.Errorf("%s has section index %#x, want SHN_LIVEPATCH", r.Sym.Name, r.Sym.Shndx)
			}
		}
		if testenv.HaveTools(t, "readelf") {
			p := filepath.Join(t.TempDir(), "klp.o")
			os.WriteFile(p, conv, 0o644)
			out, _ := exec.Command("readelf", "-SW", p).CombinedOutput()
			if !strings.Contains(string(out), ".klp.rela.vmlinux.text.counter") || !strings.Contains(string(out), "AIo") {
				t.Errorf("readelf -S shows no .klp.rela.vmlinux.text.counter with flags AIo:\n%s", out)
			}
		}
	})
}

func TestStripNumbers(t *testing.T) {
	for in, want := range map[string]string{
		"foo.isra.0": "foo.isra", "foo.constprop.0.isra.12": "foo.constprop.isra", "count.3": "count",
		"foo.cold": "foo.cold", "foo": "foo", "foo.part.1": "foo.part",
	} {
		if got := stripNumbers(in); got != want {
			t.Errorf("stripNumbers(%q) = %q, want %q", in, got, want)
		}
	}
}

// A changed __weak definition is left out only on evidence that another
// file's strong definition overrides it: this file's other symbols are in
// the kernel's table, far from the only arch_hook. Without such evidence it
// is patched (the builder's verify step then compares it with the shipped
// code) rather than the fix being dropped with a warning.
func TestDiffWeak(t *testing.T) {
	forPair(t, "weak", false, func(t *testing.T, orig, patched *File) {
		filler := func(n int) []KSym {
			var out []KSym
			for i := 0; i < n; i++ {
				out = append(out, KSym{Name: fmt.Sprintf("other_file_fn_%d", i), Type: 't'})
			}
			return out
		}
		table := func(syms ...[]KSym) *Symtab {
			t := &Symtab{Object: "vmlinux"}
			for _, s := range syms {
				t.Syms = append(t.Syms, s...)
			}
			for i := range t.Syms {
				t.Syms[i].Addr = 0xffffffff81000000 + uint64(i)*0x40
			}
			return t
		}
		sibling := []KSym{{Name: "sibling", Type: 'T'}}
		hook := []KSym{{Name: "arch_hook", Type: 'T'}}
		tests := []struct {
			name  string
			table *Symtab
			funcs []string
		}{
			{"runs this file's definition", table(filler(40), sibling, hook, filler(40)), []string{"arch_hook"}},
			{"overridden by another file", table(sibling, filler(40), hook), nil},
			{"no evidence", table(filler(40), hook), []string{"arch_hook"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				o := opts(orig)
				o.Symtab = tt.table
				res, err := Diff(orig, patched, o)
				if err != nil {
					t.Fatalf("Diff(weak) = %v", err)
				}
				if diff := cmp.Diff(tt.funcs, funcNames(res)); diff != "" {
					t.Errorf("Diff(weak) replaced functions (-want +got):\n%s", diff)
				}
			})
		}
	})
}

// A fix that changes the layout of a struct the running kernel holds
// instances of is refused, naming the struct; with the same layout (only
// the code changed) it is not.
func TestDiffLayoutChangeRefused(t *testing.T) {
	forPair(t, "layout", true, func(t *testing.T, orig, patched *File) {
		_, err := Diff(orig, patched, opts(orig))
		var re *RefusedError
		if !errors.As(err, &re) || len(re.Refusals) != 1 || re.Refusals[0].Rule != RuleDataChanged || re.Refusals[0].Symbol != "struct conn" {
			t.Fatalf("Diff(layout) = %v, want a data-changed refusal on struct conn", err)
		}
	})
	forPair(t, "changed", true, func(t *testing.T, orig, patched *File) {
		if _, err := Diff(orig, patched, opts(orig)); err != nil {
			t.Errorf("Diff(changed, -g) = %v, want no refusal", err)
		}
	})
}

// TestDiffNewGlobalAcrossFiles: a fix adds a global function to one file
// and calls it from another. The caller's object reaches it as an
// ordinary undefined symbol when the build says another object provides
// it (and refuses, naming it, when none does); the defining object
// carries it under its own global name when another object calls it.
func TestDiffNewGlobalAcrossFiles(t *testing.T) {
	provided := func(n string) bool { return n == "clamp_new" }
	forPair(t, "newglobal_use", false, func(t *testing.T, orig, patched *File) {
		o := opts(orig)
		o.Provided = provided
		res, err := Diff(orig, patched, o)
		if err != nil {
			t.Fatalf("Diff(newglobal_use, provided) = %v", err)
		}
		if got := funcNames(res); !slices.Equal(got, []string{"user"}) {
			t.Errorf("replaced functions = %v, want [user]", got)
		}
		undef, _ := outSyms(res.Object)
		if !contains(undef, "clamp_new") {
			t.Errorf("undefined symbols = %v, want clamp_new (resolved by the module link)", undef)
		}
		_, err = Diff(orig, patched, opts(orig))
		var re *RefusedError
		if !errors.As(err, &re) || len(re.Refusals) != 1 || re.Refusals[0].Rule != RuleUnresolvable || re.Refusals[0].Symbol != "clamp_new" {
			t.Fatalf("Diff(newglobal_use, not provided) = %v, want an unresolvable-symbol refusal naming clamp_new", err)
		}
		if !strings.Contains(err.Error(), "include that file") {
			t.Errorf("refusal %q does not say what to do", err)
		}
	})
	forPair(t, "newglobal_def", false, func(t *testing.T, orig, patched *File) {
		res, err := Diff(orig, patched, opts(orig))
		if err != nil || res.Object != nil {
			t.Fatalf("Diff(newglobal_def) = %v, object %v; want nothing carried when no other file calls clamp_new", err, res != nil && res.Object != nil)
		}
		o := opts(orig)
		o.Export = provided
		res, err = Diff(orig, patched, o)
		if err != nil {
			t.Fatalf("Diff(newglobal_def, exported) = %v", err)
		}
		if len(res.Funcs) != 0 || !slices.Equal(res.New, []string{"clamp_new"}) || res.Object == nil {
			t.Fatalf("Diff(newglobal_def, exported) = funcs %v, new %v; want clamp_new carried as new", res.Funcs, res.New)
		}
		s := res.Object.Symbol("clamp_new")
		found := false
		for _, s := range res.Object.Symbols[1:] {
			if s.Name == "clamp_new" && s.Bind == elf.STB_GLOBAL && s.Type == elf.STT_FUNC && s.Section != nil {
				found = true
			}
		}
		if !found {
			t.Errorf("output symbol clamp_new = %+v, want a defined global function", s)
		}
		checkWritable(t, res.Object)
	})
}

// TestDiffModuleCallsNewVmlinuxFunction: a module's file calls a function
// the same fix adds to a file of vmlinux. The module's carried code reaches
// it as an ordinary undefined symbol (the livepatch module defines it),
// not as a symbol of the module or of vmlinux, while the module's own
// static still goes through a livepatch relocation of the module; without
// the vmlinux file the build is refused, naming the function.
func TestDiffModuleCallsNewVmlinuxFunction(t *testing.T) {
	forPair(t, "modcall", false, func(t *testing.T, orig, patched *File) {
		o := opts(orig)
		o.Object = "binfmt_misc"
		o.Symtab.Object = "binfmt_misc"
		o.Provided = func(n string) bool { return n == "status_word" }
		res, err := Diff(orig, patched, o)
		if err != nil {
			t.Fatalf("Diff(modcall, provided) = %v", err)
		}
		if got := funcNames(res); !slices.Equal(got, []string{"status_read"}) || res.Funcs[0].Object != "binfmt_misc" {
			t.Fatalf("replaced functions = %+v, want status_read of binfmt_misc", res.Funcs)
		}
		undef, _ := outSyms(res.Object)
		if !contains(undef, "status_word") || !contains(undef, ".klp.sym.binfmt_misc.enabled,0") {
			t.Errorf("undefined symbols = %v, want status_word (the livepatch module's) and .klp.sym.binfmt_misc.enabled,0", undef)
		}
		for _, u := range undef {
			if strings.Contains(u, "status_word") && u != "status_word" {
				t.Errorf("status_word reached through %s, want the module link", u)
			}
		}
		checkWritable(t, res.Object)

		o.Provided = nil
		_, err = Diff(orig, patched, o)
		var re *RefusedError
		if !errors.As(err, &re) || len(re.Refusals) != 1 || re.Refusals[0].Rule != RuleUnresolvable || re.Refusals[0].Symbol != "status_word" {
			t.Fatalf("Diff(modcall, not provided) = %v, want an unresolvable-symbol refusal naming status_word", err)
		}
	})
}

// TestDiffSyscall: a change to a syscall's body as SYSCALL_DEFINEn writes
// it (an out-of-line copy of the inline, so notrace, __do_sys_newuname) is
// refused, and the refusal names Stent's macro; the same change written
// with STENT_SYSCALL_DEFINEn (the body in __stent_sys_newuname, an ordinary
// function) replaces both entry points and carries the new body.
func TestDiffSyscall(t *testing.T) {
	forPair(t, "syscall_inline", false, func(t *testing.T, orig, patched *File) {
		_, err := Diff(orig, patched, opts(orig))
		var re *RefusedError
		if !errors.As(err, &re) || len(re.Refusals) != 1 || re.Refusals[0].Rule != RuleNoFtrace || re.Refusals[0].Symbol != "__do_sys_newuname" {
			t.Fatalf("Diff(syscall_inline) = %v, want one no-ftrace refusal naming __do_sys_newuname", err)
		}
		for _, want := range []string{"body of syscall newuname", "STENT_SYSCALL_DEFINEn(newuname, ...)", "#include <stent/livepatch.h>", "__x64_sys_newuname"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not say %q", err, want)
			}
		}
	})
	forPair(t, "syscall_stent", false, func(t *testing.T, orig, patched *File) {
		res, err := Diff(orig, patched, opts(orig))
		if err != nil {
			t.Fatalf("Diff(syscall_stent) = %v", err)
		}
		if got := funcNames(res); !slices.Equal(got, []string{"__ia32_sys_newuname", "__x64_sys_newuname"}) {
			t.Errorf("replaced functions = %v, want the two entry points", got)
		}
		if !slices.Contains(res.New, "__stent_sys_newuname") {
			t.Errorf("new functions = %v, want __stent_sys_newuname", res.New)
		}
		checkWritable(t, res.Object)
	})
	for _, c := range []struct{ fn, call string }{{"__do_sys_newuname", "newuname"}, {"__do_compat_sys_ioctl.isra.0", "ioctl"}, {"__do_sysx", ""}, {"do_sys_open", ""}} {
		call, ok := syscallBody(c.fn)
		if call != c.call || ok != (c.call != "") {
			t.Errorf("syscallBody(%s) = %q, %v, want %q", c.fn, call, ok, c.call)
		}
	}
}

// TestDiffCallbacks: callbacks registered the way stent/livepatch.h's
// macros do are carried, each under a global name for the generated
// klp_callbacks, beside the changed function that uses a shadow variable;
// their pointers (.stent.<kind>) are not. A callback that is a function of
// the running kernel, and a second one of a kind, are refused.
func TestDiffCallbacks(t *testing.T) {
	forPair(t, "callbacks", false, func(t *testing.T, orig, patched *File) {
		o := opts(orig)
		o.Exported = func(n string) (string, bool) {
			return "vmlinux", exported[n] || strings.HasPrefix(n, "klp_shadow_")
		}
		res, err := Diff(orig, patched, o)
		if err != nil {
			t.Fatalf("Diff(callbacks) = %v", err)
		}
		if got := funcNames(res); !slices.Equal(got, []string{"show"}) {
			t.Errorf("replaced functions = %v, want [show]", got)
		}
		want := []Callback{
			{Kind: "pre_patch", Object: "vmlinux", Func: "stent_pre", File: "test.c", NewName: "__stent_t_pre_patch"},
			{Kind: "post_unpatch", Object: "vmlinux", Func: "stent_post_unpatch", File: "test.c", NewName: "__stent_t_post_unpatch"},
		}
		if diff := cmp.Diff(want, res.Callbacks); diff != "" {
			t.Errorf("callbacks (-want +got):\n%s", diff)
		}
		for _, c := range want {
			found := false
			for _, s := range res.Object.Symbols[1:] {
				found = found || (s.Name == c.NewName && s.Bind == elf.STB_GLOBAL && s.Type == elf.STT_FUNC && s.Section != nil)
			}
			if !found {
				t.Errorf("output has no global function %s for callback %s", c.NewName, c.Func)
			}
		}
		undef, sections := outSyms(res.Object)
		if !contains(undef, "klp_shadow_get_or_alloc") || !contains(undef, "klp_shadow_free_all") {
			t.Errorf("undefined symbols = %v, want the klp_shadow_ functions (vmlinux exports)", undef)
		}
		for _, s := range sections {
			if strings.HasPrefix(s, ".stent.") || strings.HasPrefix(s, ".rela.stent.") {
				t.Errorf("output carries %s, the callback pointers", s)
			}
		}
		checkWritable(t, res.Object)
	})
	forPair(t, "callbacks_bad", false, func(t *testing.T, orig, patched *File) {
		_, err := Diff(orig, patched, opts(orig))
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Fatalf("Diff(callbacks_bad) = %v, want refusals", err)
		}
		var got []string
		for _, r := range re.Refusals {
			got = append(got, string(r.Rule)+" "+r.Symbol)
		}
		sort.Strings(got)
		if !slices.Equal(got, []string{"callback existing", "callback first"}) {
			t.Errorf("refusals = %v, want callback refusals naming existing and first (of first and second)", re.Refusals)
		}
		if !strings.Contains(err.Error(), "already has") || !strings.Contains(err.Error(), "2 post_patch callbacks (first, second)") {
			t.Errorf("refusal %q does not say why", err)
		}
	})
}
