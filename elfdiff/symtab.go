package elfdiff

import (
	"debug/elf"
	"fmt"
	"path"
	"strings"
)

// Symtab is the symbol table of the object being patched (vmlinux or one
// module) in the order the kernel walks it when it resolves a livepatch
// symbol: kallsyms order for vmlinux, the module's ELF symbol table order for
// a module (kernel/livepatch/core.c, klp_find_object_symbol).
//
// How the kernel counts (6.1, klp_find_callback): every symbol of the
// object whose name matches, in that order; old_sympos 0 requires a single
// match. For vmlinux, kallsyms_on_each_symbol walks the kallsyms tables
// compiled into .rodata, which keep the __init symbols after their memory
// is freed: they always count. For a module, module_kallsyms_on_each_symbol
// walks mod->kallsyms: the whole ELF symbol table (every defined symbol,
// __init ones included) from load until the module's init function has
// run, then only the core symbols (is_core_symbol: allocated, not in an
// .init* section). A patch applied before the module loads resolves in the
// first view (klp_module_coming), one applied to a loaded module in the
// second.
type Symtab struct {
	Object string // "vmlinux" or the module's name
	Syms   []KSym

	byName map[string][]int
}

// indexOf returns the positions of the symbols called name, in table order.
// The first call indexes the table and marks vmlinux's __init symbols.
func (t *Symtab) indexOf(name string) []int {
	if t.byName == nil {
		t.byName = make(map[string][]int, len(t.Syms))
		for i := range t.Syms {
			t.byName[t.Syms[i].Name] = append(t.byName[t.Syms[i].Name], i)
		}
		t.markInit()
	}
	return t.byName[name]
}

// markInit marks the symbols between vmlinux's __init_begin and __init_end
// (kallsyms lists both with CONFIG_KALLSYMS_ALL): .init.text, .init.data
// and the rest of what free_initmem releases.
func (t *Symtab) markInit() {
	b, e := t.byName["__init_begin"], t.byName["__init_end"]
	if len(b) != 1 || len(e) != 1 {
		return
	}
	lo, hi := t.Syms[b[0]].Addr, t.Syms[e[0]].Addr
	for i := range t.Syms {
		if a := t.Syms[i].Addr; a >= lo && a < hi {
			t.Syms[i].Init = true
		}
	}
}

// uniqueNames keeps the names that occur once in the table: only those tell
// where a file's symbols are (__key.3 or __refcount_add.constprop.0 occur
// in many files).
func (t *Symtab) uniqueNames(names []string, except string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		if n != except && len(t.indexOf(n)) == 1 {
			m[n] = true
		}
	}
	return m
}

// KSym is one symbol of a Symtab.
type KSym struct {
	Name string
	Addr uint64
	Type byte   // kallsyms type letter: upper case for global symbols
	File string // source file name when known (modules keep STT_FILE symbols)
	// Init marks a symbol no live patch can mean: in vmlinux, one in the
	// memory freed after boot (it stays in kallsyms and is counted); in a
	// module, one the kernel drops from the module's kallsyms once its
	// init has run (in an .init* section, a non-allocated one, or without
	// a section), counted only until then.
	Init bool
}

// Global reports whether the symbol is global (upper-case type letter).
func (k KSym) Global() bool { return k.Type >= 'A' && k.Type <= 'Z' }

// ModuleSymtab builds the Symtab of a loadable module from its .ko: its
// defined, named symbols in symbol-table order, each with the STT_FILE name
// that precedes it; those the kernel drops after the module's init (see
// Symtab) are marked Init.
func ModuleSymtab(name string, ko *File) *Symtab {
	t := &Symtab{Object: name}
	file := ""
	for _, s := range ko.Symbols[1:] {
		if s.Type == elf.STT_FILE {
			file = s.Name
			continue
		}
		// Section symbols have no name in a .ko's string table.
		if s.Name == "" || s.Type == elf.STT_SECTION {
			continue
		}
		if s.Section == nil && s.Shndx == elf.SHN_UNDEF {
			continue
		}
		typ := byte('d')
		// is_core_symbol: SHN_ABS and the like (index past the section
		// table), non-allocated sections and the .init* sections that
		// module_init_layout_section puts in init memory are dropped.
		init := s.Section == nil || s.Section.Flags&elf.SHF_ALLOC == 0 || strings.HasPrefix(s.Section.Name, ".init")
		if s.Section != nil && s.Section.Flags&elf.SHF_EXECINSTR != 0 {
			typ = 't'
		}
		f := file
		if s.Bind != elf.STB_LOCAL {
			typ -= 'a' - 'A'
			f = ""
		}
		t.Syms = append(t.Syms, KSym{Name: s.Name, Addr: s.Value, Type: typ, File: f, Init: init})
	}
	return t
}

// Has reports whether the table holds a symbol called name.
func (t *Symtab) Has(name string) bool { return len(t.indexOf(name)) > 0 }

// Address returns the address of symbol name at livepatch position sympos
// (0: the name must be unique).
func (t *Symtab) Address(name string, sympos int) (uint64, bool) {
	c := t.indexOf(name)
	switch {
	case sympos == 0 && len(c) == 1:
		return t.Syms[c[0]].Addr, true
	case sympos >= 1 && sympos <= len(c):
		return t.Syms[c[sympos-1]].Addr, true
	}
	return 0, false
}

// Overridden reports whether the kernel runs another file's definition of
// name rather than the one of the file whose other symbols are neighbours:
// some neighbour is in the table (so the file is linked in, and it is known
// where), but no symbol called name sits among them in address order. How
// to tell whether the kernel runs a file's __weak definition or another
// file's strong one. Without evidence either way (no neighbour in the
// table, no symbol called name) the answer is false: the definition is
// patched, and the verify step compares it with the shipped code.
func (t *Symtab) Overridden(name string, neighbours []string) bool {
	nb := t.uniqueNames(neighbours, name)
	if len(nb) == 0 || len(t.indexOf(name)) == 0 {
		return false
	}
	for _, i := range t.indexOf(name) {
		for j := max(0, i-16); j < min(len(t.Syms), i+17); j++ {
			if nb[t.Syms[j].Name] {
				return false
			}
		}
	}
	return true
}

// ErrAmbiguous is returned by Position when it cannot tell same-named
// symbols apart.
type ErrAmbiguous struct {
	Object, Name string
	Count        int
}

func (e *ErrAmbiguous) Error() string {
	return fmt.Sprintf("%d symbols called %s in %s and nothing tells which one the patched file defines", e.Count, e.Name, e.Object)
}

// Position returns the livepatch symbol position of name: 0 when the name is
// unique in the table, otherwise the 1-based index among all same-named
// symbols, counted as the kernel counts them (see Symtab). global says
// whether the wanted symbol is global; file is the source file that defines
// it (matched against STT_FILE names where the table has them); neighbours
// are names of other symbols the same file defines, used to pick the
// candidate surrounded by them in address order when nothing else tells.
//
// The wanted symbol is never an __init one (the differ refuses changing or
// referring to __init code and data), so Init symbols are counted but never
// chosen. In a module, a same-named Init symbol before the wanted one would
// make the position differ between a patch applied before the module loads
// and one applied after its init: no single position fits both, and
// Position fails with an *InitBeforeError.
func (t *Symtab) Position(name string, global bool, file string, neighbours []string) (int, error) {
	all := t.indexOf(name)
	switch len(all) {
	case 0:
		return 0, fmt.Errorf("symbol %s not found in %s's symbol table", name, t.Object)
	case 1:
		return 0, nil
	}
	pick := func(from []int, keep func(KSym) bool) []int {
		var out []int
		for _, c := range from {
			if keep(t.Syms[c]) {
				out = append(out, c)
			}
		}
		return out
	}
	live := pick(all, func(k KSym) bool { return !k.Init })
	if len(live) == 0 {
		return 0, fmt.Errorf("every symbol called %s in %s's symbol table is __init (freed after boot or the module's load)", name, t.Object)
	}
	m := pick(live, func(k KSym) bool { return k.Global() == global })
	c := -1
	switch {
	case len(m) == 0:
		return 0, fmt.Errorf("no %s symbol called %s in %s's symbol table", bindWord(global), name, t.Object)
	case len(m) == 1:
		c = m[0]
	case file != "":
		base := path.Base(file)
		if f := pick(m, func(k KSym) bool { return k.File != "" && path.Base(k.File) == base }); len(f) == 1 {
			c = f[0]
		}
	}
	if c < 0 {
		// Score by neighbours within a window of the address-sorted table.
		nb := t.uniqueNames(neighbours, name)
		best, bestScore, tie := -1, -1, false
		for _, x := range m {
			score := 0
			for j := max(0, x-48); j < min(len(t.Syms), x+49); j++ {
				if nb[t.Syms[j].Name] {
					score++
				}
			}
			switch {
			case score > bestScore:
				best, bestScore, tie = x, score, false
			case score == bestScore:
				tie = true
			}
		}
		if best < 0 || tie || bestScore <= 0 {
			return 0, &ErrAmbiguous{Object: t.Object, Name: name, Count: len(m)}
		}
		c = best
	}
	pos, before := 0, 0
	for i, x := range all {
		if x == c {
			pos = i + 1
			break
		}
		if t.Syms[x].Init {
			before++
		}
	}
	if t.Object != "vmlinux" && before > 0 {
		return 0, &InitBeforeError{Object: t.Object, Name: name, Loading: pos, Loaded: pos - before}
	}
	return pos, nil
}

// InitBeforeError is returned by Position for a module symbol preceded by
// same-named symbols the kernel drops after the module's init: its position
// is Loading while the module loads (a patch applied first resolves it
// then) and Loaded afterwards.
type InitBeforeError struct {
	Object, Name    string
	Loading, Loaded int
}

func (e *InitBeforeError) Error() string {
	return fmt.Sprintf("%s in module %s comes after a same-named __init symbol in the module's symbol table: the kernel counts it as position %d while the module loads and %d once the module's init memory is freed, and no one klp position fits a patch applied both before and after the module loads; reboot into a fixed kernel",
		e.Name, e.Object, e.Loading, e.Loaded)
}

func bindWord(global bool) string {
	if global {
		return "global"
	}
	return "local"
}
