package elfdiff

import (
	"debug/elf"
	"fmt"
	"path"
)

// Symtab is the symbol table of the object being patched (vmlinux or one
// module) in the order the kernel walks it when it resolves a livepatch
// symbol: kallsyms order for vmlinux, the module's ELF symbol table order for
// a module (kernel/livepatch/core.c, klp_find_object_symbol).
type Symtab struct {
	Object string // "vmlinux" or the module's name
	Syms   []KSym

	byName map[string][]int
}

// indexOf returns the positions of the symbols called name, in table order.
func (t *Symtab) indexOf(name string) []int {
	if t.byName == nil {
		t.byName = make(map[string][]int, len(t.Syms))
		for i := range t.Syms {
			t.byName[t.Syms[i].Name] = append(t.byName[t.Syms[i].Name], i)
		}
	}
	return t.byName[name]
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
}

// Global reports whether the symbol is global (upper-case type letter).
func (k KSym) Global() bool { return k.Type >= 'A' && k.Type <= 'Z' }

// ModuleSymtab builds the Symtab of a loadable module from its .ko: the
// defined symbols of allocated sections in symbol-table order, each with the
// STT_FILE name that precedes it.
func ModuleSymtab(name string, ko *File) *Symtab {
	t := &Symtab{Object: name}
	file := ""
	for _, s := range ko.Symbols[1:] {
		if s.Type == elf.STT_FILE {
			file = s.Name
			continue
		}
		if s.Name == "" || s.Type == elf.STT_SECTION {
			continue
		}
		if s.Section == nil || s.Section.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		typ := byte('d')
		if s.Section.Flags&elf.SHF_EXECINSTR != 0 {
			typ = 't'
		}
		f := file
		if s.Bind != elf.STB_LOCAL {
			typ -= 'a' - 'A'
			f = ""
		}
		t.Syms = append(t.Syms, KSym{Name: s.Name, Addr: s.Value, Type: typ, File: f})
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
// unique in the table, otherwise the 1-based index among same-named symbols.
// global says whether the wanted symbol is global; file is the source file
// that defines it (matched against STT_FILE names where the table has them);
// neighbours are names of other symbols the same file defines, used to pick
// the candidate surrounded by them in address order when nothing else tells.
func (t *Symtab) Position(name string, global bool, file string, neighbours []string) (int, error) {
	cands := t.indexOf(name)
	switch len(cands) {
	case 0:
		return 0, fmt.Errorf("symbol %s not found in %s's symbol table", name, t.Object)
	case 1:
		return 0, nil
	}
	pick := func(keep func(KSym) bool) []int {
		var out []int
		for _, c := range cands {
			if keep(t.Syms[c]) {
				out = append(out, c)
			}
		}
		return out
	}
	pos := func(c int) int {
		for i, x := range cands {
			if x == c {
				return i + 1
			}
		}
		return 0
	}
	if m := pick(func(k KSym) bool { return k.Global() == global }); len(m) == 1 {
		return pos(m[0]), nil
	} else if len(m) > 1 {
		cands2 := m
		if file != "" {
			base := path.Base(file)
			if f := pick(func(k KSym) bool { return k.Global() == global && k.File != "" && path.Base(k.File) == base }); len(f) == 1 {
				return pos(f[0]), nil
			}
		}
		// Score by neighbours within a window of the address-sorted table.
		nb := t.uniqueNames(neighbours, name)
		best, bestScore, tie := -1, -1, false
		for _, c := range cands2 {
			score := 0
			for j := max(0, c-48); j < min(len(t.Syms), c+49); j++ {
				if nb[t.Syms[j].Name] {
					score++
				}
			}
			switch {
			case score > bestScore:
				best, bestScore, tie = c, score, false
			case score == bestScore:
				tie = true
			}
		}
		if best >= 0 && !tie && bestScore > 0 {
			return pos(best), nil
		}
		return 0, &ErrAmbiguous{Object: t.Object, Name: name, Count: len(cands2)}
	}
	return 0, fmt.Errorf("no %s symbol called %s in %s's symbol table", bindWord(global), name, t.Object)
}

func bindWord(global bool) string {
	if global {
		return "global"
	}
	return "local"
}
