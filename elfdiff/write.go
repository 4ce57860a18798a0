package elfdiff

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
)

// Write serialises f as a relocatable little-endian ELF64 object. The symbol
// table, string tables and relocation sections are rebuilt: local symbols
// first, each relocation section right after the section it applies to.
func Write(f *File) ([]byte, error) {
	le := binary.LittleEndian

	// Order symbols: null, locals, then the rest, keeping relative order.
	syms := []*Symbol{f.Symbols[0]}
	for _, s := range f.Symbols[1:] {
		if s.Bind == elf.STB_LOCAL {
			syms = append(syms, s)
		}
	}
	firstGlobal := len(syms)
	for _, s := range f.Symbols[1:] {
		if s.Bind != elf.STB_LOCAL {
			syms = append(syms, s)
		}
	}
	for i, s := range syms {
		s.index = i
	}

	// Lay out the section header table.
	type hdr struct {
		name                         string
		typ                          elf.SectionType
		flags                        elf.SectionFlag
		addr, off, size, align, ents uint64
		link, info                   uint32
		data                         []byte
		nobits                       bool
	}
	hdrs := []*hdr{{}}
	secIndex := map[*Section]int{}
	type relaFix struct {
		h      *hdr
		target *Section
		relocs []Reloc
	}
	var relas []relaFix
	for _, s := range f.Sections[1:] {
		secIndex[s] = len(hdrs)
		s.index = len(hdrs)
		hdrs = append(hdrs, &hdr{name: s.Name, typ: s.Type, flags: s.Flags, addr: s.Addr, size: s.Size,
			align: s.Addralign, ents: s.Entsize, info: s.Info, data: s.Data, nobits: s.Type == elf.SHT_NOBITS})
		if len(s.Relocs) > 0 {
			name := s.RelaName
			if name == "" {
				name = ".rela" + s.Name
			}
			h := &hdr{name: name, typ: elf.SHT_RELA, flags: s.RelaFlags | elf.SHF_INFO_LINK, align: 8, ents: 24}
			relas = append(relas, relaFix{h, s, s.Relocs})
			hdrs = append(hdrs, h)
		}
		if len(s.KLPRelocs) > 0 {
			name := ".klp.rela." + s.KLPObject + s.Name
			if !strings.HasPrefix(s.Name, ".") {
				name = ".klp.rela." + s.KLPObject + "." + s.Name
			}
			h := &hdr{name: name, typ: elf.SHT_RELA,
				flags: elf.SHF_ALLOC | elf.SHF_INFO_LINK | SHF_RELA_LIVEPATCH, align: 8, ents: 24}
			relas = append(relas, relaFix{h, s, s.KLPRelocs})
			hdrs = append(hdrs, h)
		}
	}
	symtabIdx := len(hdrs)
	symtab := &hdr{name: ".symtab", typ: elf.SHT_SYMTAB, align: 8, ents: 24}
	strtabIdx := symtabIdx + 1
	strtab := &hdr{name: ".strtab", typ: elf.SHT_STRTAB, align: 1}
	shstrIdx := symtabIdx + 2
	shstr := &hdr{name: ".shstrtab", typ: elf.SHT_STRTAB, align: 1}
	hdrs = append(hdrs, symtab, strtab, shstr)
	if len(hdrs) >= int(elf.SHN_LORESERVE) {
		return nil, fmt.Errorf("write object: %d sections, more than ELF's %d", len(hdrs), elf.SHN_LORESERVE)
	}

	// Fix links now that indices are known.
	for _, s := range f.Sections[1:] {
		h := hdrs[secIndex[s]]
		if s.Link != nil {
			li, ok := secIndex[s.Link]
			if !ok {
				return nil, fmt.Errorf("write object: section %s links to section %s, which is not in the file", s.Name, s.Link.Name)
			}
			h.link = uint32(li)
		}
		if s.Type == elf.SHT_GROUP {
			h.link = uint32(symtabIdx)
			if s.Signature == nil || s.Signature.index >= len(syms) || syms[s.Signature.index] != s.Signature {
				return nil, fmt.Errorf("write object: group %s has no signature symbol in the file", s.Name)
			}
			h.info = uint32(s.Signature.index)
			d := make([]byte, 4, 4+4*len(s.Group))
			if len(s.Data) >= 4 {
				copy(d, s.Data[:4])
			}
			for _, m := range s.Group {
				mi, ok := secIndex[m]
				if !ok {
					return nil, fmt.Errorf("write object: group %s names section %s, which is not in the file", s.Name, m.Name)
				}
				d = le.AppendUint32(d, uint32(mi))
			}
			h.data = d
			h.size = uint64(len(d))
		}
	}

	// String tables.
	strs := newStrtab()
	symData := make([]byte, 0, 24*len(syms))
	for i, s := range syms {
		var name uint32
		if i > 0 && s.Type != elf.STT_SECTION {
			name = strs.add(s.Name)
		}
		shndx := uint16(s.Shndx)
		if s.Section != nil {
			si, ok := secIndex[s.Section]
			if !ok {
				return nil, fmt.Errorf("write object: symbol %s is defined in section %s, which is not in the file", s.Name, s.Section.Name)
			}
			shndx = uint16(si)
		} else if i > 0 && s.Type == elf.STT_SECTION {
			return nil, fmt.Errorf("write object: section symbol %s has no section", s.Name)
		}
		symData = le.AppendUint32(symData, name)
		symData = append(symData, byte(s.Bind)<<4|byte(s.Type)&0xf, s.Other)
		symData = le.AppendUint16(symData, shndx)
		symData = le.AppendUint64(symData, s.Value)
		symData = le.AppendUint64(symData, s.Size)
	}
	symtab.data, symtab.size = symData, uint64(len(symData))
	symtab.link, symtab.info = uint32(strtabIdx), uint32(firstGlobal)
	strtab.data, strtab.size = strs.b, uint64(len(strs.b))

	for _, r := range relas {
		d := make([]byte, 0, 24*len(r.relocs))
		for _, rel := range r.relocs {
			if rel.Sym == nil || rel.Sym.index >= len(syms) || syms[rel.Sym.index] != rel.Sym {
				return nil, fmt.Errorf("write object: relocation at %s+%#x names a symbol that is not in the file", r.target.Name, rel.Offset)
			}
			d = le.AppendUint64(d, rel.Offset)
			d = le.AppendUint64(d, uint64(rel.Sym.index)<<32|uint64(rel.Type))
			d = le.AppendUint64(d, uint64(rel.Addend))
		}
		r.h.data, r.h.size = d, uint64(len(d))
		r.h.link, r.h.info = uint32(symtabIdx), uint32(secIndex[r.target])
	}

	shs := newStrtab()
	names := make([]uint32, len(hdrs))
	for i, h := range hdrs {
		if i > 0 {
			names[i] = shs.add(h.name)
		}
	}
	shstr.data, shstr.size = shs.b, uint64(len(shs.b))

	// Lay out the file: header, section contents, section headers.
	out := make([]byte, 64)
	for _, h := range hdrs[1:] {
		if h.nobits {
			h.off = uint64(len(out))
			continue
		}
		a := h.align
		if a == 0 {
			a = 1
		}
		for uint64(len(out))%a != 0 {
			out = append(out, 0)
		}
		h.off = uint64(len(out))
		if uint64(len(h.data)) != h.size {
			return nil, fmt.Errorf("write object: section %s has %d bytes of data but size %d", h.name, len(h.data), h.size)
		}
		out = append(out, h.data...)
	}
	for len(out)%8 != 0 {
		out = append(out, 0)
	}
	shoff := uint64(len(out))
	for i, h := range hdrs {
		out = le.AppendUint32(out, names[i])
		out = le.AppendUint32(out, uint32(h.typ))
		out = le.AppendUint64(out, uint64(h.flags))
		out = le.AppendUint64(out, h.addr)
		out = le.AppendUint64(out, h.off)
		out = le.AppendUint64(out, h.size)
		out = le.AppendUint32(out, h.link)
		out = le.AppendUint32(out, h.info)
		out = le.AppendUint64(out, h.align)
		out = le.AppendUint64(out, h.ents)
	}

	// ELF header.
	copy(out, []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), byte(f.OSABI)})
	le.PutUint16(out[16:], uint16(elf.ET_REL))
	le.PutUint16(out[18:], uint16(f.Machine))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[24:], 0) // entry
	le.PutUint64(out[32:], 0) // phoff
	le.PutUint64(out[40:], shoff)
	le.PutUint32(out[48:], f.Flags)
	le.PutUint16(out[52:], 64) // ehsize
	le.PutUint16(out[54:], 0)  // phentsize
	le.PutUint16(out[56:], 0)  // phnum
	le.PutUint16(out[58:], 64) // shentsize
	le.PutUint16(out[60:], uint16(len(hdrs)))
	le.PutUint16(out[62:], uint16(shstrIdx))
	return out, nil
}

type strtab struct {
	b   []byte
	idx map[string]uint32
}

func newStrtab() *strtab { return &strtab{b: []byte{0}, idx: map[string]uint32{"": 0}} }

func (t *strtab) add(s string) uint32 {
	if i, ok := t.idx[s]; ok {
		return i
	}
	i := uint32(len(t.b))
	t.b = append(t.b, s...)
	t.b = append(t.b, 0)
	t.idx[s] = i
	return i
}
