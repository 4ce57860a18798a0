package elfdiff

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// lineFuncs take a source line number as an argument; a change of only the
// immediate line number passed to them is not a change of behaviour.
var lineFuncs = map[string]bool{
	"__might_sleep": true, "__might_resched": true, "__might_fault": true, "___might_sleep": true,
	"__cant_sleep": true, "__cant_migrate": true, "lockdep_rcu_suspicious": true,
	"__warn_printk": true, "warn_slowpath_fmt": true, "__ubsan_handle_out_of_bounds": true,
	"_printk": true, "printk": true, "__dynamic_pr_debug": true, "rcu_read_lock_held": true,
}

// freshStatics are static locals a patched function may get a new copy of
// instead of sharing the original's: once-flags, lockdep keys, rate limit
// state, constant names, the print tables of __print_symbolic and
// __print_flags. Their numbered names change whenever lines move (and
// vmlinux holds hundreds of symbols.N: a copy needs no symbol position).
var freshStatics = []string{
	"__already_done", "__warned", "__print_once", "__key", "__func__", "__FUNCTION__",
	"_rs", "CSWTCH", "descriptor", "_entry", "_entry_ptr", "__UNIQUE_ID_",
	"__tpstrtab", "__msg", "__fmt", "symbols", "__flags",
}

func isFreshStatic(s *Symbol) bool {
	if s.Bind != elf.STB_LOCAL || s.Type != elf.STT_OBJECT {
		return false
	}
	st := stripNumbers(s.Name)
	for _, p := range freshStatics {
		if st == p || (strings.HasSuffix(p, "_") && strings.HasPrefix(s.Name, p)) {
			return true
		}
	}
	return false
}

var fileLine = regexp.MustCompile(`([A-Za-z0-9_./-]+\.[chS]):[0-9]+`)

func isStrings(s *Section) bool {
	return s != nil && s.Flags&elf.SHF_STRINGS != 0 && s.Flags&elf.SHF_MERGE != 0
}

func cstring(b []byte, off int64) ([]byte, bool) {
	if off < 0 || off > int64(len(b)) {
		return nil, false
	}
	e := bytes.IndexByte(b[off:], 0)
	if e < 0 {
		return b[off:], true
	}
	return b[off : off+int64(e)], true
}

// sameTarget reports whether relocation rp (in the patched object, section
// ps) and ro (original, section os) reach the same thing.
func (d *differ) sameTarget(ps *Section, rp Reloc, os *Section, ro Reloc) bool {
	if rp.Type != ro.Type {
		return false
	}
	tp, offp := d.p.target(ps, rp)
	to, offo := d.o.target(os, ro)
	switch {
	case tp == nil && to == nil:
		if rp.Sym.Section == nil || ro.Sym.Section == nil {
			return rp.Sym.Name == ro.Sym.Name && rp.Addend == ro.Addend
		}
		sp, so := rp.Sym.Section, ro.Sym.Section
		if stripNumbers(sp.Name) != stripNumbers(so.Name) {
			return false
		}
		if isStrings(sp) {
			a, ok1 := cstring(sp.Data, offp)
			b, ok2 := cstring(so.Data, offo)
			if !ok1 || !ok2 || rp.Addend-offp != ro.Addend-offo {
				return false
			}
			// "file.c:402" in a message built with __stringify(__LINE__)
			// moves with the lines too.
			return bytes.Equal(a, b) || bytes.Equal(fileLine.ReplaceAll(a, []byte("$1:#")), fileLine.ReplaceAll(b, []byte("$1:#")))
		}
		if sp.Flags&elf.SHF_EXECINSTR != 0 && sp.Type != elf.SHT_NOBITS {
			// A code fragment outside any function, such as the
			// .altinstr_aux tail of static_cpu_has(): the section holds
			// every function's fragment, so compare this one only, up
			// to its final jump (what the carried code copies), and
			// wherever it sits.
			endp, ok1 := fragmentEnd(sp.Data, offp)
			endo, ok2 := fragmentEnd(so.Data, offo)
			if !ok1 || !ok2 || endp-offp != endo-offo || rp.Addend-offp != ro.Addend-offo {
				return false
			}
			return bytes.Equal(sp.Data[offp:endp], so.Data[offo:endo]) &&
				d.sameRelocs(sp, so, uint64(offp), uint64(offo), uint64(endp-offp))
		}
		if offp != offo || sp.Size != so.Size {
			return false
		}
		return bytes.Equal(sp.Data, so.Data) && d.sameRelocs(sp, so, 0, 0, sp.Size)
	case tp == nil || to == nil:
		return false
	}
	if offp != offo {
		return false
	}
	if tp.Section == nil || to.Section == nil {
		return tp.Section == nil && to.Section == nil && tp.Name == to.Name
	}
	if d.twin[tp] == to {
		return true
	}
	if (isFreshStatic(tp) && isFreshStatic(to) || isConstLocal(tp) && isConstLocal(to)) && stripNumbers(tp.Name) == stripNumbers(to.Name) {
		return tp.Size == to.Size && sameBytes(tp, to) &&
			d.sameRelocs(tp.Section, to.Section, tp.Value, to.Value, tp.Size)
	}
	return false
}

// isConstLocal reports whether s is a file- or function-scope static
// constant (a __print_symbolic table, symbols.N): which copy of equal
// contents code reads makes no difference, so references to such objects
// compare by contents when the symbols did not pair (or paired with
// another copy of the same contents).
func isConstLocal(s *Symbol) bool {
	return s.Bind == elf.STB_LOCAL && s.Type == elf.STT_OBJECT && s.Section != nil &&
		s.Section.Flags&elf.SHF_WRITE == 0 && s.Section.Type != elf.SHT_NOBITS && !isInit(s.Section)
}

// sameRelocs compares the relocations of two byte ranges of equal length.
func (d *differ) sameRelocs(ps, os *Section, pstart, ostart, size uint64) bool {
	var rp, ro []Reloc
	for _, r := range ps.Relocs {
		if r.Offset >= pstart && r.Offset < pstart+size {
			rp = append(rp, r)
		}
	}
	for _, r := range os.Relocs {
		if r.Offset >= ostart && r.Offset < ostart+size {
			ro = append(ro, r)
		}
	}
	if len(rp) != len(ro) {
		return false
	}
	sort.Slice(rp, func(i, j int) bool { return rp[i].Offset < rp[j].Offset })
	sort.Slice(ro, func(i, j int) bool { return ro[i].Offset < ro[j].Offset })
	for i := range rp {
		if rp[i].Offset-pstart != ro[i].Offset-ostart {
			return false
		}
		if d.depth > 4 { // data pointing at data pointing at ...: stop
			if rp[i].Sym.Name != ro[i].Sym.Name || rp[i].Addend != ro[i].Addend {
				return false
			}
			continue
		}
		d.depth++
		same := d.sameTarget(ps, rp[i], os, ro[i])
		d.depth--
		if !same {
			return false
		}
	}
	return true
}

// change says how a function differs from its original.
type change int

const (
	unchanged change = iota
	lineOnly         // only __LINE__ numbers moved
	changed
)

// compareFunc compares function p (patched) with its twin o.
func (d *differ) compareFunc(p, o *Symbol) change {
	if p.Size != o.Size {
		return changed
	}
	if !d.sameRelocs(p.Section, o.Section, p.Value, o.Value, p.Size) {
		return changed
	}
	result := unchanged
	bp, bo := bytesOf(p), bytesOf(o)
	if !bytes.Equal(bp, bo) {
		if !d.lineOnlyCode(p, o, bp, bo) {
			return changed
		}
		result = lineOnly
	}
	switch d.compareEntries(p, o) {
	case changed:
		return changed
	case lineOnly:
		result = lineOnly
	}
	return result
}

// lineOnlyCode reports whether code bp (patched function p) differs from
// bo (original o) only in immediate operands that are __LINE__ numbers:
// every differing instruction moves a 32-bit constant, and every such
// constant moved by the distance the function itself moved in the source
// (DW_AT_decl_line). Without DWARF, only arguments of lineFuncs qualify,
// all moved by one distance.
func (d *differ) lineOnlyCode(p, o *Symbol, bp, bo []byte) bool {
	shift, known := int64(0), false
	if lp, ok := d.declLine(d.p, p.Name); ok {
		if lo, ok := d.declLine(d.o, o.Name); ok {
			shift, known = lp-lo, true
		}
	}
	if known && shift == 0 {
		return false
	}
	if !known {
		callsLine := false
		for _, r := range d.p.relocsOf(p) {
			if lineFuncs[r.Sym.Name] {
				callsLine = true
			}
		}
		if !callsLine {
			return false
		}
	}
	var delta int64
	seen := false
	for pos := 0; pos < len(bp); {
		ip, err1 := x86asm.Decode(bp[pos:], 64)
		io, err2 := x86asm.Decode(bo[pos:], 64)
		if err1 != nil || err2 != nil || ip.Len != io.Len || ip.Len == 0 {
			return bytes.Equal(bp[pos:], bo[pos:])
		}
		n := ip.Len
		if !bytes.Equal(bp[pos:pos+n], bo[pos:pos+n]) {
			a, ok1 := lineImm(ip)
			b, ok2 := lineImm(io)
			if !ok1 || !ok2 || ip.Op != io.Op || ip.Args[0] != io.Args[0] {
				return false
			}
			dl := a - b
			if known && dl != shift || seen && dl != delta {
				return false
			}
			// Without DWARF nothing says the constant is a line number:
			// it must be an argument of the next call, to a function that
			// takes one (might_sleep's __LINE__), not any constant of a
			// function that also happens to call one.
			if !known && !d.nextCallTakesLine(p, bp, pos+n) {
				return false
			}
			delta, seen = dl, true
		}
		pos += n
	}
	return true
}

// nextCallTakesLine reports whether the first call in code (function p's
// bytes) at or after pos goes to one of lineFuncs.
func (d *differ) nextCallTakesLine(p *Symbol, code []byte, pos int) bool {
	for pos < len(code) {
		in, err := x86asm.Decode(code[pos:], 64)
		if err != nil || in.Len == 0 {
			return false
		}
		switch in.Op {
		case x86asm.CALL:
			for _, r := range p.Section.Relocs {
				if r.Offset > p.Value+uint64(pos) && r.Offset < p.Value+uint64(pos+in.Len) {
					return lineFuncs[r.Sym.Name]
				}
			}
			return false
		case x86asm.RET, x86asm.JMP:
			return false
		}
		pos += in.Len
	}
	return false
}

// lineImm returns the constant a MOV of an immediate loads, when it could
// be a line number.
func lineImm(in x86asm.Inst) (int64, bool) {
	if in.Op != x86asm.MOV {
		return 0, false
	}
	imm, ok := in.Args[1].(x86asm.Imm)
	if !ok || imm <= 0 || imm > 1<<20 {
		return 0, false
	}
	switch in.Args[0].(type) {
	case x86asm.Reg, x86asm.Mem:
		return int64(imm), true
	}
	return 0, false
}

// entry is one special-section entry tied to a function.
type entry struct {
	sec   *Section
	sp    *special
	start uint64 // offset of the entry in sec
	rel   uint64 // offset of the anchored code location inside the function
}

// entriesOf lists the special-section entries of obj anchored in function f.
func entriesOf(obj *object, f *Symbol) []entry {
	var out []entry
	for _, sec := range obj.special {
		sp := specialOf(sec.Name)
		for _, r := range sec.Relocs {
			if sp.size == 0 || r.Offset%uint64(sp.size) != uint64(sp.anchor) {
				continue
			}
			t, off := obj.target(sec, r)
			if t != f {
				continue
			}
			out = append(out, entry{sec: sec, sp: sp, start: r.Offset - uint64(sp.anchor), rel: uint64(off)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].sec.Name != out[j].sec.Name {
			return out[i].sec.Name < out[j].sec.Name
		}
		return out[i].rel < out[j].rel
	})
	return out
}

// compareEntries compares the special-section entries tied to p and o.
func (d *differ) compareEntries(p, o *Symbol) change {
	ep, eo := entriesOf(d.p, p), entriesOf(d.o, o)
	filter := func(es []entry) []entry {
		var out []entry
		for _, e := range es {
			if e.sp.compare {
				out = append(out, e)
			}
		}
		return out
	}
	ep, eo = filter(ep), filter(eo)
	if len(ep) != len(eo) {
		return changed
	}
	result := unchanged
	for i := range ep {
		a, b := ep[i], eo[i]
		if a.sec.Name != b.sec.Name || a.rel != b.rel {
			return changed
		}
		n := uint64(a.sp.size)
		if a.start+n > uint64(len(a.sec.Data)) || b.start+n > uint64(len(b.sec.Data)) {
			return changed
		}
		ba := append([]byte(nil), a.sec.Data[a.start:a.start+n]...)
		bb := append([]byte(nil), b.sec.Data[b.start:b.start+n]...)
		for _, m := range a.sp.mask {
			if !bytes.Equal(ba[m[0]:m[1]], bb[m[0]:m[1]]) {
				result = lineOnly
			}
			copy(ba[m[0]:m[1]], make([]byte, m[1]-m[0]))
			copy(bb[m[0]:m[1]], make([]byte, m[1]-m[0]))
		}
		if !bytes.Equal(ba, bb) {
			return changed
		}
		// Compare the relocations other than the anchor.
		if !d.sameEntryRelocs(a, b) {
			return changed
		}
		if a.sp.carve != "" && !sameCarved(d, a, b) {
			return changed
		}
	}
	return result
}

func (d *differ) sameEntryRelocs(a, b entry) bool {
	n := uint64(a.sp.size)
	var ra, rb []Reloc
	for _, r := range a.sec.Relocs {
		if r.Offset >= a.start && r.Offset < a.start+n && r.Offset != a.start+uint64(a.sp.anchor) && !isCarveRef(a.sp, r) {
			ra = append(ra, r)
		}
	}
	for _, r := range b.sec.Relocs {
		if r.Offset >= b.start && r.Offset < b.start+n && r.Offset != b.start+uint64(b.sp.anchor) && !isCarveRef(b.sp, r) {
			rb = append(rb, r)
		}
	}
	if len(ra) != len(rb) {
		return false
	}
	for i := range ra {
		if ra[i].Offset-a.start != rb[i].Offset-b.start {
			return false
		}
		if !d.sameTarget(a.sec, ra[i], b.sec, rb[i]) {
			return false
		}
	}
	return true
}

func isCarveRef(sp *special, r Reloc) bool {
	return sp.carve != "" && r.Sym.Section != nil && r.Sym.Section.Name == sp.carve
}

// sameCarved compares the replacement bytes an .altinstructions entry
// points at.
func sameCarved(d *differ, a, b entry) bool {
	ra, sa, ok1 := carvedRange(d.p, a)
	rb, sb, ok2 := carvedRange(d.o, b)
	if !ok1 || !ok2 {
		return ok1 == ok2
	}
	if ra[1]-ra[0] != rb[1]-rb[0] {
		return false
	}
	if !bytes.Equal(sa.Data[ra[0]:ra[1]], sb.Data[rb[0]:rb[1]]) {
		return false
	}
	return d.sameRelocs(sa, sb, uint64(ra[0]), uint64(rb[0]), uint64(ra[1]-ra[0]))
}

// carvedRange returns the byte range of the carve section an entry points
// at (for .altinstructions: repl_offset and replacementlen).
func carvedRange(obj *object, e entry) ([2]int, *Section, bool) {
	for _, r := range e.sec.Relocs {
		if r.Offset < e.start || r.Offset >= e.start+uint64(e.sp.size) || r.Offset == e.start+uint64(e.sp.anchor) {
			continue
		}
		if r.Sym.Section == nil || r.Sym.Section.Name != e.sp.carve {
			continue
		}
		start := int(int64(r.Sym.Value) + r.Addend)
		n := int(e.sec.Data[e.start+uint64(e.sp.lenAt)])
		s := r.Sym.Section
		if start < 0 || start+n > len(s.Data) {
			return [2]int{}, nil, false
		}
		return [2]int{start, start + n}, s, true
	}
	return [2]int{}, nil, false
}

// compareData compares object p (patched) with its twin o: size, initial
// bytes and the relocations inside them.
func (d *differ) compareData(p, o *Symbol) bool {
	if p.Size != o.Size {
		return false
	}
	if p.Section.Type != o.Section.Type {
		return false
	}
	if !sameBytes(p, o) {
		return false
	}
	return d.sameRelocs(p.Section, o.Section, p.Value, o.Value, p.Size)
}

// sameBytes compares the initial bytes of data symbols p and o, leaving
// out the line number of a dynamic debug descriptor (struct _ddebug in
// __dyndbg: lineno is the low 18 bits of the word at 32): it moves with
// the lines above, and only dynamic debug's control file shows it.
func sameBytes(p, o *Symbol) bool {
	bp, bo := bytesOf(p), bytesOf(o)
	if p.Section.Name != "__dyndbg" || o.Section.Name != "__dyndbg" || len(bp) != len(bo) || len(bp) < ddebugLine+4 {
		return bytes.Equal(bp, bo)
	}
	mask := func(b []byte) []byte {
		b = append([]byte(nil), b...)
		w := binary.LittleEndian.Uint32(b[ddebugLine:])
		binary.LittleEndian.PutUint32(b[ddebugLine:], w&^(1<<18-1))
		return b
	}
	return bytes.Equal(mask(bp), mask(bo))
}

// ddebugLine is the offset of struct _ddebug's lineno bit field (after
// modname, function, filename and format) on x86-64.
const ddebugLine = 32
