package elfdiff

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// object indexes one input object for the diff.
type object struct {
	f       *File
	bySec   map[*Section][]*Symbol // function and object symbols of each section, by address
	insns   map[*Section][]int     // instruction start offsets of code sections
	refs    map[*Symbol][]*Symbol  // function or object -> the function and object symbols its relocations reach
	users   map[*Symbol][]*Symbol  // reverse of refs
	cold    map[*Symbol]*Symbol    // parent function -> its .cold part
	parent  map[*Symbol]*Symbol    // .cold part -> parent
	special []*Section             // special sections present

	declLines map[string]int64 // function name -> DW_AT_decl_line, from DWARF
}

func index(f *File) *object {
	o := &object{
		f:      f,
		bySec:  map[*Section][]*Symbol{},
		insns:  map[*Section][]int{},
		refs:   map[*Symbol][]*Symbol{},
		users:  map[*Symbol][]*Symbol{},
		cold:   map[*Symbol]*Symbol{},
		parent: map[*Symbol]*Symbol{},
	}
	for _, s := range f.Symbols[1:] {
		if s.Section != nil && (s.Type == elf.STT_FUNC || s.Type == elf.STT_OBJECT) {
			o.bySec[s.Section] = append(o.bySec[s.Section], s)
		}
	}
	for _, syms := range o.bySec {
		sort.SliceStable(syms, func(i, j int) bool { return syms[i].Value < syms[j].Value })
	}
	for _, s := range f.Symbols[1:] {
		if s.Type == elf.STT_FUNC && strings.HasSuffix(stripNumbers(s.Name), ".cold") {
			base := strings.TrimSuffix(stripNumbers(s.Name), ".cold")
			for _, p := range f.Symbols[1:] {
				if p.Type == elf.STT_FUNC && p != s && p.Section != nil && stripNumbers(p.Name) == base && o.refersTo(p, s) {
					o.cold[p] = s
					o.parent[s] = p
					break
				}
			}
		}
	}
	for _, s := range f.Symbols[1:] {
		if s.Section == nil || (s.Type != elf.STT_FUNC && s.Type != elf.STT_OBJECT) {
			continue
		}
		seen := map[*Symbol]bool{}
		for _, r := range o.relocsOf(s) {
			t, _ := o.target(s.Section, r)
			if t != nil && t != s && !seen[t] {
				seen[t] = true
				o.refs[s] = append(o.refs[s], t)
				o.users[t] = append(o.users[t], s)
			}
		}
	}
	for _, s := range f.Sections[1:] {
		if specialOf(s.Name) != nil {
			o.special = append(o.special, s)
		}
	}
	return o
}

// refersTo reports whether p has a relocation into c's section.
func (o *object) refersTo(p, c *Symbol) bool {
	for _, r := range p.Section.Relocs {
		if r.Offset >= p.Value && r.Offset < p.Value+p.Size && r.Sym.Section == c.Section {
			return true
		}
	}
	return false
}

// relocsOf returns the relocations inside the bytes of symbol s.
func (o *object) relocsOf(s *Symbol) []Reloc {
	var out []Reloc
	end := s.Value + s.Size
	if s.Size == 0 {
		end = s.Section.Size
	}
	for _, r := range s.Section.Relocs {
		if r.Offset >= s.Value && r.Offset < end {
			out = append(out, r)
		}
	}
	return out
}

// bytesOf returns the bytes of symbol s (nil for SHT_NOBITS).
func bytesOf(s *Symbol) []byte {
	if s.Section == nil || s.Section.Data == nil {
		return nil
	}
	end := s.Value + s.Size
	if end > uint64(len(s.Section.Data)) || s.Value > end {
		return nil
	}
	return s.Section.Data[s.Value:end]
}

// isCode reports whether a section holds instructions.
func isCode(s *Section) bool { return s != nil && s.Flags&elf.SHF_EXECINSTR != 0 }

// isPCRel reports whether relocation type t is PC-relative.
func isPCRel(t elf.R_X86_64) bool {
	switch t {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_PC64, elf.R_X86_64_GOTPCREL,
		elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX:
		return true
	}
	return false
}

// insnEnd returns how far past the relocated field the instruction that
// holds it ends, so that a PC-relative relocation reaches
// sym + addend + insnEnd. Outside code the answer is 0.
func (o *object) insnEnd(sec *Section, r Reloc) int64 {
	if !isCode(sec) || !isPCRel(r.Type) {
		return 0
	}
	starts, ok := o.insns[sec]
	if !ok {
		starts = decodeStarts(sec.Data)
		o.insns[sec] = starts
	}
	i := sort.SearchInts(starts, int(r.Offset)+1) - 1
	if i < 0 || i+1 >= len(starts) {
		return 4
	}
	return int64(starts[i+1]) - int64(r.Offset)
}

// decodeStarts returns the start offsets of the instructions in code, with
// len(code) appended. Bytes that do not decode count as one-byte
// instructions.
func decodeStarts(code []byte) []int {
	var starts []int
	for p := 0; p < len(code); {
		starts = append(starts, p)
		in, err := x86asm.Decode(code[p:], 64)
		if err != nil || in.Len <= 0 {
			p++
			continue
		}
		p += in.Len
	}
	return append(starts, len(code))
}

// target resolves relocation r (in section sec) to the function or object
// symbol it reaches and the offset inside it. For references into sections
// without a covering symbol (string literals, anonymous constants) it
// returns nil and the offset into the section.
func (o *object) target(sec *Section, r Reloc) (*Symbol, int64) {
	s := r.Sym
	if s.Type != elf.STT_SECTION {
		if s.Section == nil || s.Type == elf.STT_FUNC || s.Type == elf.STT_OBJECT {
			return s, r.Addend
		}
		// A NOTYPE label: treat like a section reference.
	}
	if s.Section == nil {
		return nil, 0
	}
	off := int64(s.Value) + r.Addend + o.insnEnd(sec, r)
	syms := o.bySec[s.Section]
	for _, c := range syms {
		if off >= int64(c.Value) && (off < int64(c.Value+c.Size) || (c.Size == 0 && off == int64(c.Value))) {
			return c, r.Addend + int64(s.Value) - int64(c.Value)
		}
	}
	// One symbol covering a whole function or data section: use it even when
	// the reference points just past it (end-of-object pointers).
	if len(syms) == 1 && syms[0].Value == 0 && (syms[0].Size == s.Section.Size || off == int64(syms[0].Size)) {
		return syms[0], r.Addend + int64(s.Value)
	}
	return nil, off
}

var (
	numSuffix = regexp.MustCompile(`\.[0-9]+`)
	uniqueID  = regexp.MustCompile(`^(__UNIQUE_ID_[A-Za-z_]+?)[0-9]+(\.|$)`)
)

// stripNumbers removes the compiler's numeric suffixes (foo.isra.0 ->
// foo.isra, count.3 -> count, foo.cold.12 -> foo.cold) and the
// __COUNTER__ of __UNIQUE_ID names (__UNIQUE_ID_ddebug412.7 ->
// __UNIQUE_ID_ddebug), which moves whenever a fix adds a user above.
func stripNumbers(name string) string {
	if strings.HasPrefix(name, "__UNIQUE_ID_") {
		name = uniqueID.ReplaceAllString(name, "$1$2")
	}
	if !strings.Contains(name, ".") {
		return name
	}
	return numSuffix.ReplaceAllString(name, "")
}

// declLine returns the source line a function is declared on, from the
// object's DWARF, or false when the object has none.
// Reading the object's DWARF the first time, a failure is a warning: line
// number changes then count as real changes.
func (d *differ) declLine(o *object, name string) (int64, bool) {
	if o.declLines == nil {
		var err error
		if o.declLines, err = declLines(o.f.raw); err != nil {
			d.warnings = append(d.warnings, fmt.Sprintf("%s: cannot read declaration lines from DWARF (functions that moved in the file count as changed): %v", d.opts.File, err))
		}
	}
	base, _, _ := strings.Cut(name, ".")
	l, ok := o.declLines[base]
	return l, ok
}

// declLines reads DW_AT_decl_line of every function defined in the
// object. Without DWARF, or when its reader stops on an error, the map
// holds what was read: callers then treat differing line numbers as real
// changes. A panic of the DWARF reader yields an empty map and the error.
func declLines(raw []byte) (map[string]int64, error) {
	m := map[string]int64{}
	ef, dw, err := objectDWARF(raw)
	if dw == nil {
		return m, err
	}
	err = ef.Do(func() error {
		r := dw.Reader()
		for {
			e, err := r.Next()
			if err != nil || e == nil {
				return nil
			}
			if e.Tag == dwarf.TagSubprogram {
				name, _ := e.Val(dwarf.AttrName).(string)
				line, ok := e.Val(dwarf.AttrDeclLine).(int64)
				decl, _ := e.Val(dwarf.AttrDeclaration).(bool)
				if name != "" && ok && !decl {
					if _, seen := m[name]; !seen {
						m[name] = line
					}
				}
			}
			if e.Children && e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
		}
	})
	if err != nil {
		return map[string]int64{}, err
	}
	return m, nil
}

// hasFentry reports whether function s starts with a call to __fentry__,
// the ftrace hook a livepatch redirects.
func (o *object) hasFentry(s *Symbol) bool {
	at := s.Value + 1
	if b := bytesOf(s); len(b) >= 4 && string(b[:4]) == "\xf3\x0f\x1e\xfa" {
		at += 4 // endbr64 first under CONFIG_X86_KERNEL_IBT
	}
	for _, r := range o.relocsOf(s) {
		if r.Offset == at && r.Sym.Name == "__fentry__" {
			return true
		}
	}
	return false
}
