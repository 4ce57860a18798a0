package build

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/safeelf"
)

// ErrNotReproduced is wrapped when a function the patch replaces, as
// compiled here from the unpatched source, differs from the code the
// distribution shipped: the compiler, its flags or the configuration differ
// from the distribution's build, and a patch built on that basis could call
// functions with the wrong conventions or reach the wrong data.
var ErrNotReproduced = errors.New("the unpatched source does not reproduce the shipped code")

// shippedFunc is a function as the distribution shipped it.
type shippedFunc struct {
	// code runs from the function's start to past its end (to the end of
	// its section at most): how long the function is, the comparison
	// finds out, since a jump the shipped build could make short makes
	// it shorter than the copy compiled here.
	code []byte
	// addr is where code starts: its address in vmlinux, or its offset in
	// its section of a module's .ko.
	addr uint64
	// at names the symbols at an address of the same space (kallsyms, or
	// the .ko's symbols of the function's section).
	at func(addr uint64) []string
	// relocs are the .ko's relocations in code, by offset from its start:
	// gas leaves none for a jump to a function of the same section, the
	// linker none at all.
	relocs map[uint64]elfdiff.Reloc
	// resolve names what a jump's relocation of the .ko reaches.
	resolve func(elfdiff.Reloc) (string, int64, bool)
}

// shippedCode returns a function the kernel shipped, from vmlinux (by
// address) or from a module's .ko (by symbol); size is its size as
// compiled here.
type shippedCode func(name string, sympos int, size uint64) (*shippedFunc, error)

// shippedSlack is how far past the size of the copy compiled here the
// shipped code is read: encodings only shrink in the shipped build (short
// jumps to neighbours), but a few bytes more cost nothing.
const shippedSlack = 64

// vmlinuxCode reads functions from an uncompressed vmlinux by the
// addresses kallsyms gives.
func vmlinuxCode(vml []byte, t *elfdiff.Symtab) (shippedCode, error) {
	ef, err := safeelf.NewBytes("vmlinux", vml)
	if err != nil {
		return nil, fmt.Errorf("read vmlinux: %w", err)
	}
	var byAddr map[uint64][]string
	at := func(addr uint64) []string {
		if byAddr == nil {
			byAddr = make(map[uint64][]string, len(t.Syms))
			for _, s := range t.Syms {
				byAddr[s.Addr] = append(byAddr[s.Addr], s.Name)
			}
		}
		return byAddr[addr]
	}
	return func(name string, sympos int, size uint64) (f *shippedFunc, err error) {
		addr, ok := t.Address(name, sympos)
		if !ok {
			return nil, fmt.Errorf("%s,%d not in kallsyms", name, sympos)
		}
		err = ef.Do(func() error {
			for _, s := range ef.Sections {
				if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && addr >= s.Addr && addr+size <= s.Addr+s.Size {
					n := min(size+shippedSlack, s.Addr+s.Size-addr)
					b := make([]byte, n)
					if _, err := s.ReadAt(b, int64(addr-s.Addr)); err != nil {
						return err
					}
					f = &shippedFunc{code: b, addr: addr, at: at}
					return nil
				}
			}
			return fmt.Errorf("%s at %#x is in no code section of vmlinux", name, addr)
		})
		if _, ok := errors.AsType[*safeelf.PanicError](err); ok {
			return nil, fmt.Errorf("read %s from vmlinux: %w", name, err)
		}
		if err != nil {
			return nil, err
		}
		return f, nil
	}, nil
}

// moduleCode reads functions from a module's .ko by symbol and livepatch
// position, counted among all same-named symbols as elfdiff.ModuleSymtab
// (and the kernel while the module loads) counts them.
func moduleCode(ko *elfdiff.File, file string) shippedCode {
	return func(name string, sympos int, size uint64) (*shippedFunc, error) {
		var cands []*elfdiff.Symbol
		for _, s := range ko.Symbols[1:] {
			if s.Name == name && s.Type != elf.STT_FILE && s.Type != elf.STT_SECTION && (s.Section != nil || s.Shndx != elf.SHN_UNDEF) {
				cands = append(cands, s)
			}
		}
		var s *elfdiff.Symbol
		switch {
		case len(cands) == 1 && sympos <= 1:
			s = cands[0]
		case sympos >= 1 && sympos <= len(cands):
			s = cands[sympos-1]
		default:
			return nil, fmt.Errorf("%s,%d: %d symbols of that name in the module", name, sympos, len(cands))
		}
		if s.Type != elf.STT_FUNC || s.Section == nil {
			return nil, fmt.Errorf("%s,%d in the module is not a function", name, sympos)
		}
		if s.Value+size > uint64(len(s.Section.Data)) {
			return nil, fmt.Errorf("%s runs past its section in the module", name)
		}
		end := min(s.Value+size+shippedSlack, uint64(len(s.Section.Data)))
		f := &shippedFunc{code: append([]byte(nil), s.Section.Data[s.Value:end]...), addr: s.Value, relocs: map[uint64]elfdiff.Reloc{}}
		syms := newSymIndex(ko)
		sec := s.Section
		f.at = func(addr uint64) []string { return syms.namesAt(sec, addr) }
		f.resolve = syms.branchTarget
		for _, r := range s.Section.Relocs {
			if r.Offset >= s.Value && r.Offset < end {
				f.relocs[r.Offset-s.Value] = r
			}
		}
		return f, nil
	}
}

// symIndex finds the function and object symbols of an object's sections
// by offset.
type symIndex map[*elfdiff.Section][]*elfdiff.Symbol

func newSymIndex(f *elfdiff.File) symIndex {
	m := symIndex{}
	for _, s := range f.Symbols[1:] {
		if s.Section != nil && s.Name != "" && (s.Type == elf.STT_FUNC || s.Type == elf.STT_OBJECT || s.Type == elf.STT_NOTYPE) {
			m[s.Section] = append(m[s.Section], s)
		}
	}
	return m
}

// namesAt names the symbols of sec that start at off.
func (m symIndex) namesAt(sec *elfdiff.Section, off uint64) []string {
	var out []string
	for _, s := range m[sec] {
		if s.Value == off {
			out = append(out, s.Name)
		}
	}
	return out
}

// branchTarget names what the PC-relative relocation r of a jump or call
// reaches: a symbol and the offset into it. The field ends the
// instruction, so the target is the symbol plus the addend plus 4.
func (m symIndex) branchTarget(r elfdiff.Reloc) (string, int64, bool) {
	if r.Sym == nil || r.Sym.Type != elf.STT_SECTION {
		if r.Sym == nil || r.Sym.Name == "" {
			return "", 0, false
		}
		return r.Sym.Name, r.Addend + 4, true
	}
	return m.symbolAt(r.Sym.Section, int64(r.Sym.Value)+r.Addend+4)
}

// symbolAt names the function of sec holding offset off, and the offset
// into it.
func (m symIndex) symbolAt(sec *elfdiff.Section, off int64) (string, int64, bool) {
	for _, s := range m[sec] {
		if s.Type == elf.STT_FUNC && off >= int64(s.Value) && off < int64(s.Value+s.Size) {
			return s.Name, off - int64(s.Value), true
		}
	}
	return "", 0, false
}

func maskReloc(b []byte, off uint64, t elf.R_X86_64) {
	n := uint64(4)
	if t == elf.R_X86_64_64 || t == elf.R_X86_64_PC64 {
		n = 8
	}
	for i := off; i < off+n && i < uint64(len(b)); i++ {
		b[i] = 0
	}
}

// verifyOriginals compares every replaced function of orig (the object
// compiled here without the fix) with the shipped code, instruction by
// instruction (compareCode).
func verifyOriginals(orig *elfdiff.File, funcs []elfdiff.Func, code shippedCode) error {
	var bad []string
	syms := newSymIndex(orig)
	for _, f := range funcs {
		var s *elfdiff.Symbol
		for _, c := range orig.Symbols[1:] {
			if c.Name == f.Name && c.Type == elf.STT_FUNC && c.Section != nil {
				s = c
				break
			}
		}
		if s == nil || s.Value+s.Size > uint64(len(s.Section.Data)) {
			bad = append(bad, f.Name+" (not in the original object)")
			continue
		}
		shipped, err := code(f.Name, f.Sympos, s.Size)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s (%v)", f.Name, err))
			continue
		}
		if why := compareCode(s, syms, shipped); why != "" {
			bad = append(bad, fmt.Sprintf("%s (%s)", f.Name, why))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("%w: %s; check that the compiler (%s) and the configuration match the distribution's build, or pass --no-verify to build anyway",
			ErrNotReproduced, strings.Join(bad, ", "), "CONFIG_CC_VERSION_TEXT")
	}
	return nil
}
