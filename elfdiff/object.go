// Package elfdiff compares an original and a patched relocatable x86-64
// kernel object (both built with -ffunction-sections -fdata-sections), decides
// which functions a source fix changed, refuses changes a live patch cannot
// carry safely, and extracts the changed functions with everything they need
// into a new relocatable object whose references to the running kernel are
// livepatch relocations (.klp.rela / .klp.sym, see the kernel's
// Documentation/livepatch/module-elf-format.rst).
//
// Everything here is pure: bytes in, bytes out. Reading uses debug/elf, which
// is not hardened against hostile input, through internal/safeelf: its
// panics are reported as errors wrapping ErrFormat.
package elfdiff

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/stent-dev/stent/internal/safeelf"
)

// SHF_RELA_LIVEPATCH and SHN_LIVEPATCH keep their kernel spelling
// (include/uapi/linux/elf.h).
const (
	SHF_RELA_LIVEPATCH = elf.SectionFlag(0x00100000)
	SHN_LIVEPATCH      = elf.SectionIndex(0xff20)
)

// ErrFormat is wrapped by every error about a malformed input object. It
// is safeelf's: a panic debug/elf raised on the input wraps it too.
var ErrFormat = safeelf.ErrFormat

// File is a relocatable ELF64 object held in memory: sections with their
// bytes, symbols and relocations linked by pointers so it can be edited and
// written back with Write.
type File struct {
	Machine  elf.Machine
	OSABI    elf.OSABI
	Flags    uint32
	Sections []*Section // Sections[0] is the null section
	Symbols  []*Symbol  // Symbols[0] is the null symbol

	raw []byte // the bytes Read parsed, for DWARF
}

// Section is one section. Symbol tables, string tables and relocation
// sections are not kept as sections: Write rebuilds them from Symbols and
// Relocs.
type Section struct {
	Name      string
	Type      elf.SectionType
	Flags     elf.SectionFlag
	Addr      uint64
	Addralign uint64
	Entsize   uint64
	Size      uint64 // len(Data), or the size of a SHT_NOBITS section
	Data      []byte
	Link      *Section // for sections other than relocations and symbol tables
	Info      uint32   // raw sh_info for sections other than relocations
	Relocs    []Reloc  // relocations applying to this section
	RelaName  string   // name of the relocation section ("" means ".rela"+Name)
	RelaFlags elf.SectionFlag
	// KLPRelocs are livepatch relocations for this section, written as
	// .klp.rela.<KLPObject>.<Name> with SHF_RELA_LIVEPATCH.
	KLPRelocs []Reloc
	KLPObject string
	Group     []*Section // members, for SHT_GROUP (Data[0:4] holds the flags)
	Signature *Symbol    // the signature symbol of a SHT_GROUP section

	index int // position in the file being read or written
}

// Symbol is one symbol. Section is nil for undefined, absolute, common and
// livepatch symbols; Shndx then holds the special index.
type Symbol struct {
	Name    string
	Bind    elf.SymBind
	Type    elf.SymType
	Other   uint8
	Section *Section
	Shndx   elf.SectionIndex
	Value   uint64
	Size    uint64

	index int
}

// Reloc is one RELA relocation.
type Reloc struct {
	Offset uint64
	Type   elf.R_X86_64
	Sym    *Symbol
	Addend int64
}

// Defined reports whether s is defined in a section of its file.
func (s *Symbol) Defined() bool { return s.Section != nil }

func (s *Symbol) String() string { return s.Name }

// Read parses a relocatable little-endian ELF64 object. It never panics:
// debug/elf's panics on hostile input (and this package's own) are returned
// as *safeelf.FormatError, wrapping ErrFormat, with the offset being read
// when it is known.
func Read(data []byte) (*File, error) {
	ef, err := safeelf.NewBytes("object", data)
	if err != nil {
		return nil, withStack(err)
	}
	var f *File
	err = ef.Do(func() (err error) {
		f, err = read(ef.File, data)
		return err
	})
	if err != nil {
		return nil, withStack(err)
	}
	return f, nil
}

// withStack adds the stack of a recovered panic to its error: a panic on
// any input is a bug to report, with where it happened.
func withStack(err error) error {
	if pe, ok := errors.AsType[*safeelf.PanicError](err); ok {
		return fmt.Errorf("%w\n%s", err, pe.Stack)
	}
	return err
}

func read(ef *elf.File, data []byte) (*File, error) {
	if ef.Class != elf.ELFCLASS64 || ef.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%w: only little-endian ELF64 objects are supported", ErrFormat)
	}
	if ef.Type != elf.ET_REL {
		return nil, fmt.Errorf("%w: type %v, want a relocatable object (ET_REL)", ErrFormat, ef.Type)
	}
	f := &File{Machine: ef.Machine, OSABI: ef.OSABI, raw: data}
	if len(data) >= 0x34 {
		f.Flags = binary.LittleEndian.Uint32(data[0x30:])
	}
	n := len(ef.Sections)
	shstrndx := -1
	if len(data) >= 64 {
		shstrndx = int(binary.LittleEndian.Uint16(data[62:]))
	}
	secs := make([]*Section, n)
	var symtab *elf.Section
	for i, es := range ef.Sections {
		s := &Section{
			Name: es.Name, Type: es.Type, Flags: es.Flags, Addr: es.Addr,
			Addralign: es.Addralign, Entsize: es.Entsize, Size: es.Size, Info: es.Info, index: i,
		}
		secs[i] = s
		if es.Addralign > 1<<20 || es.Addralign&(es.Addralign-1) != 0 {
			return nil, fmt.Errorf("%w: section %d (%s) has alignment %#x (want a power of two up to 1 MiB)", ErrFormat, i, es.Name, es.Addralign)
		}
		switch es.Type {
		case elf.SHT_NOBITS, elf.SHT_NULL:
		default:
			if es.Offset > uint64(len(data)) || es.Size > uint64(len(data))-es.Offset {
				return nil, fmt.Errorf("%w: section %d (%s) at offset %#x size %#x lies outside the file (%d bytes)",
					ErrFormat, i, es.Name, es.Offset, es.Size, len(data))
			}
			s.Data = append([]byte(nil), data[es.Offset:es.Offset+es.Size]...)
		}
		if es.Type == elf.SHT_SYMTAB {
			if symtab != nil {
				return nil, fmt.Errorf("%w: more than one symbol table", ErrFormat)
			}
			symtab = es
		}
	}
	for i, es := range ef.Sections {
		if es.Type != elf.SHT_RELA && es.Type != elf.SHT_REL && es.Type != elf.SHT_SYMTAB && es.Link != 0 {
			if int(es.Link) >= n {
				return nil, fmt.Errorf("%w: section %d (%s) links to section %d of %d", ErrFormat, i, es.Name, es.Link, n)
			}
			secs[i].Link = secs[es.Link]
		}
	}
	f.Sections = secs

	// Symbols. debug/elf drops the null symbol: index i here is symbol i+1.
	f.Symbols = []*Symbol{{}}
	if symtab != nil {
		esyms, err := ef.Symbols()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return nil, fmt.Errorf("%w: symbol table at offset %#x: %v", ErrFormat, symtab.Offset, err)
		}
		for i, es := range esyms {
			s := &Symbol{
				Name: es.Name, Bind: elf.ST_BIND(es.Info), Type: elf.ST_TYPE(es.Info), Other: es.Other,
				Shndx: es.Section, Value: es.Value, Size: es.Size, index: i + 1,
			}
			if es.Section != elf.SHN_UNDEF && es.Section < elf.SHN_LORESERVE {
				if int(es.Section) >= n {
					return nil, fmt.Errorf("%w: symbol %d (%s) in section %d of %d", ErrFormat, i+1, es.Name, es.Section, n)
				}
				s.Section = secs[es.Section]
			}
			if s.Type == elf.STT_SECTION && s.Section != nil && s.Name == "" {
				s.Name = s.Section.Name
			}
			f.Symbols = append(f.Symbols, s)
		}
	}

	// Relocations and groups.
	keep := make([]bool, n)
	for i, es := range ef.Sections {
		s := secs[i]
		switch es.Type {
		case elf.SHT_RELA:
			if int(es.Info) >= n || es.Info == 0 {
				return nil, fmt.Errorf("%w: relocation section %s applies to section %d of %d", ErrFormat, es.Name, es.Info, n)
			}
			target := secs[es.Info]
			klp := es.Flags&SHF_RELA_LIVEPATCH != 0
			if klp && len(target.KLPRelocs) > 0 || !klp && len(target.Relocs) > 0 {
				return nil, fmt.Errorf("%w: section %s has two relocation sections", ErrFormat, target.Name)
			}
			if len(s.Data)%24 != 0 {
				return nil, fmt.Errorf("%w: relocation section %s at offset %#x has size %d, not a multiple of 24", ErrFormat, es.Name, es.Offset, len(s.Data))
			}
			rels := make([]Reloc, 0, len(s.Data)/24)
			for off := 0; off < len(s.Data); off += 24 {
				info := binary.LittleEndian.Uint64(s.Data[off+8:])
				si := int(info >> 32)
				if si >= len(f.Symbols) {
					return nil, fmt.Errorf("%w: relocation %d of %s (file offset %#x) names symbol %d of %d",
						ErrFormat, off/24, es.Name, es.Offset+uint64(off), si, len(f.Symbols))
				}
				rels = append(rels, Reloc{
					Offset: binary.LittleEndian.Uint64(s.Data[off:]),
					Type:   elf.R_X86_64(uint32(info)),
					Sym:    f.Symbols[si],
					Addend: int64(binary.LittleEndian.Uint64(s.Data[off+16:])),
				})
			}
			if klp {
				obj, _, _ := strings.Cut(strings.TrimPrefix(es.Name, ".klp.rela."), ".")
				target.KLPRelocs, target.KLPObject = rels, obj
			} else {
				target.Relocs = rels
				target.RelaName = es.Name
				target.RelaFlags = es.Flags
			}
		case elf.SHT_REL:
			return nil, fmt.Errorf("%w: REL relocation section %s (only RELA is supported)", ErrFormat, es.Name)
		case elf.SHT_SYMTAB, elf.SHT_STRTAB, elf.SHT_NULL:
			// Rebuilt by Write.
			if es.Type == elf.SHT_STRTAB && i != shstrndx && symtab != nil && int(symtab.Link) != i {
				keep[i] = true
			}
		case elf.SHT_SYMTAB_SHNDX:
			return nil, fmt.Errorf("%w: extended section indices (SHT_SYMTAB_SHNDX) are not supported", ErrFormat)
		case elf.SHT_GROUP:
			if len(s.Data)%4 != 0 || len(s.Data) < 4 {
				return nil, fmt.Errorf("%w: group section %s at offset %#x has size %d", ErrFormat, es.Name, es.Offset, len(s.Data))
			}
			for off := 4; off < len(s.Data); off += 4 {
				m := binary.LittleEndian.Uint32(s.Data[off:])
				if int(m) >= n {
					return nil, fmt.Errorf("%w: group %s names section %d of %d", ErrFormat, es.Name, m, n)
				}
				s.Group = append(s.Group, secs[m])
			}
			if int(es.Info) >= len(f.Symbols) {
				return nil, fmt.Errorf("%w: group %s signature symbol %d of %d", ErrFormat, es.Name, es.Info, len(f.Symbols))
			}
			s.Signature = f.Symbols[es.Info]
			keep[i] = true
		default:
			keep[i] = true
		}
	}
	// Drop the sections Write rebuilds, keeping Sections[0].
	out := []*Section{secs[0]}
	for i := 1; i < n; i++ {
		if keep[i] {
			out = append(out, secs[i])
		}
	}
	for _, s := range f.Symbols[1:] {
		if s.Section != nil && !keep[s.Section.index] {
			// A symbol in a relocation or string section: keep it undefined.
			s.Section = nil
			s.Shndx = elf.SHN_UNDEF
		}
	}
	f.Sections = out
	return f, nil
}

// Section returns the first section called name, or nil.
func (f *File) Section(name string) *Section {
	for _, s := range f.Sections[1:] {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Symbol returns the first non-section symbol called name, or nil.
func (f *File) Symbol(name string) *Symbol {
	for _, s := range f.Symbols[1:] {
		if s.Name == name && s.Type != elf.STT_SECTION {
			return s
		}
	}
	return nil
}

// SectionSymbol returns the STT_SECTION symbol of s, adding one if needed.
func (f *File) SectionSymbol(s *Section) *Symbol {
	for _, sym := range f.Symbols[1:] {
		if sym.Type == elf.STT_SECTION && sym.Section == s {
			return sym
		}
	}
	sym := &Symbol{Name: s.Name, Bind: elf.STB_LOCAL, Type: elf.STT_SECTION, Section: s}
	f.Symbols = append(f.Symbols, sym)
	return sym
}

func firstLines(b []byte, n int) string {
	lines := bytes.SplitN(b, []byte("\n"), n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
