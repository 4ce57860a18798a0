package build

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/stent-dev/stent/elfdiff"
)

// ErrNotReproduced is wrapped when a function the patch replaces, as
// compiled here from the unpatched source, differs from the code the
// distribution shipped: the compiler, its flags or the configuration differ
// from the distribution's build, and a patch built on that basis could call
// functions with the wrong conventions or reach the wrong data.
var ErrNotReproduced = errors.New("the unpatched source does not reproduce the shipped code")

// shippedCode returns the bytes of a function the kernel shipped, from
// vmlinux (by address) or from a module's .ko (by symbol).
type shippedCode func(name string, sympos int, size uint64) ([]byte, error)

// vmlinuxCode reads functions from an uncompressed vmlinux by the
// addresses kallsyms gives.
func vmlinuxCode(vml []byte, t *elfdiff.Symtab) (shippedCode, error) {
	ef, err := elf.NewFile(bytes.NewReader(vml))
	if err != nil {
		return nil, fmt.Errorf("read vmlinux: %w", err)
	}
	return func(name string, sympos int, size uint64) (b []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("read %s from vmlinux: %v", name, r)
			}
		}()
		addr, ok := t.Address(name, sympos)
		if !ok {
			return nil, fmt.Errorf("%s,%d not in kallsyms", name, sympos)
		}
		for _, s := range ef.Sections {
			if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && addr >= s.Addr && addr+size <= s.Addr+s.Size {
				b := make([]byte, size)
				if _, err := s.ReadAt(b, int64(addr-s.Addr)); err != nil {
					return nil, err
				}
				return b, nil
			}
		}
		return nil, fmt.Errorf("%s at %#x is in no code section of vmlinux", name, addr)
	}, nil
}

// moduleCode reads functions from a module's .ko by symbol and livepatch
// position, counted among all same-named symbols as elfdiff.ModuleSymtab
// (and the kernel while the module loads) counts them.
func moduleCode(ko *elfdiff.File, file string) shippedCode {
	return func(name string, sympos int, size uint64) ([]byte, error) {
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
		b := append([]byte(nil), s.Section.Data[s.Value:s.Value+size]...)
		// The .ko is relocatable: mask what its relocations fill in.
		for _, r := range s.Section.Relocs {
			if r.Offset >= s.Value && r.Offset < s.Value+size {
				maskReloc(b, r.Offset-s.Value, r.Type)
			}
		}
		return b, nil
	}
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
// compiled here without the fix) with the shipped code. Relocated fields are
// masked on both sides.
func verifyOriginals(orig *elfdiff.File, funcs []elfdiff.Func, code shippedCode) error {
	var bad []string
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
		mine := append([]byte(nil), s.Section.Data[s.Value:s.Value+s.Size]...)
		shipped, err := code(f.Name, f.Sympos, s.Size)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s (%v)", f.Name, err))
			continue
		}
		for _, r := range s.Section.Relocs {
			if r.Offset >= s.Value && r.Offset < s.Value+s.Size {
				maskReloc(mine, r.Offset-s.Value, r.Type)
				maskReloc(shipped, r.Offset-s.Value, r.Type)
			}
		}
		if !bytes.Equal(mine, shipped) {
			at := 0
			for at < len(mine) && mine[at] == shipped[at] {
				at++
			}
			bad = append(bad, fmt.Sprintf("%s (differs at +%#x)", f.Name, at))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("%w: %s; check that the compiler (%s) and the configuration match the distribution's build, or pass --no-verify to build anyway",
			ErrNotReproduced, strings.Join(bad, ", "), "CONFIG_CC_VERSION_TEXT")
	}
	return nil
}
