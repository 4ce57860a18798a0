package build

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"github.com/stent-dev/stent/elfdiff"
)

// insn is one decoded instruction of a function.
type insn struct {
	off, len int
	inst     x86asm.Inst
	ok       bool // decoded; bytes that do not decode count as one-byte instructions
}

// decodeN decodes code from its start: until end bytes are consumed, or n
// instructions when end < 0.
func decodeN(code []byte, end, n int) []insn {
	var out []insn
	for p := 0; p < len(code) && (end < 0 && len(out) < n || end >= 0 && p < end); {
		in, err := x86asm.Decode(code[p:], 64)
		if err != nil || in.Len <= 0 {
			out = append(out, insn{off: p, len: 1})
			p++
			continue
		}
		out = append(out, insn{off: p, len: in.Len, inst: in, ok: true})
		p += in.Len
	}
	return out
}

// relBranch returns the displacement of a jump or call to a fixed place
// (jmp, jcc, call, loop: a Rel operand).
func relBranch(i insn) (int64, bool) {
	if !i.ok {
		return 0, false
	}
	r, ok := i.inst.Args[0].(x86asm.Rel)
	return int64(r), ok
}

// compareCode compares function s of the object compiled here (syms
// indexes that object) with the shipped copy, instruction by instruction:
// the same operations, bytes equal outside relocated fields, and jumps and
// calls going to the same place: the same instruction of the function, or
// the same symbol. Encodings that depend on the section layout do not
// count: the shipped kernel, built without -ffunction-sections, has a
// 2-byte jmp (or jcc) to a neighbouring function of its section where the
// copy compiled here has a 5-byte one with a relocation. It returns "" when
// they match, else where and how they differ.
func compareCode(s *elfdiff.Symbol, syms symIndex, shipped *shippedFunc) string {
	mine := s.Section.Data[s.Value : s.Value+s.Size]
	relocs := map[uint64]elfdiff.Reloc{}
	for _, r := range s.Section.Relocs {
		if r.Offset >= s.Value && r.Offset < s.Value+s.Size {
			relocs[r.Offset-s.Value] = r
		}
	}
	a := decodeN(mine, len(mine), 0)
	b := decodeN(shipped.code, -1, len(a))
	if len(b) < len(a) {
		return fmt.Sprintf("the shipped code ends after %d of %d instructions", len(b), len(a))
	}
	index := func(list []insn, end int) map[int]int {
		m := map[int]int{end: len(list)}
		for i, in := range list {
			m[in.off] = i
		}
		return m
	}
	ai := index(a, len(mine))
	bEnd := b[len(b)-1].off + b[len(b)-1].len
	bi := index(b, bEnd)
	relocIn := func(m map[uint64]elfdiff.Reloc, in insn) (elfdiff.Reloc, bool) {
		for o := in.off; o < in.off+in.len; o++ {
			if r, ok := m[uint64(o)]; ok {
				return r, true
			}
		}
		return elfdiff.Reloc{}, false
	}
	show := func(in insn, code []byte) string {
		if !in.ok {
			return fmt.Sprintf("%x", code[in.off:in.off+in.len])
		}
		return in.inst.String()
	}
	for k := range a {
		x, y := a[k], b[k]
		differs := func(what string) string {
			return fmt.Sprintf("differs at +%#x: %s here, %s shipped%s", x.off, show(x, mine), show(y, shipped.code), what)
		}
		dx, bx := relBranch(x)
		dy, by := relBranch(y)
		var mineReloc elfdiff.Reloc
		if bx {
			var ok bool
			if mineReloc, ok = relocIn(relocs, x); ok {
				// A jump whose target has no symbol (static_cpu_has's
				// .altinstr_aux fragments): compared as bytes below.
				_, _, bx = syms.branchTarget(mineReloc)
			}
		}
		if bx && by && x.inst.Op == y.inst.Op {
			target := int64(shipped.addr) + int64(y.off+y.len) + dy
			differs = func(what string) string {
				here := fmt.Sprintf("%v +%#x", x.inst.Op, x.off+x.len+int(dx))
				if r, ok := relocIn(relocs, x); ok {
					if sym, off, ok := syms.branchTarget(r); ok {
						here = fmt.Sprintf("%v %s%s", x.inst.Op, sym, offset(off))
					}
				} else if to := x.off + x.len + int(dx); to < 0 || to > len(mine) {
					if sym, off, ok := syms.symbolAt(s.Section, int64(s.Value)+int64(to)); ok {
						here = fmt.Sprintf("%v %s%s", x.inst.Op, sym, offset(off))
					}
				}
				there := fmt.Sprintf("%v %#x", x.inst.Op, uint64(target))
				if names := shipped.at(uint64(target)); len(names) > 0 {
					there += " (" + strings.Join(names, ", ") + ")"
				}
				return fmt.Sprintf("differs at +%#x: %s here, %s shipped%s", x.off, here, there, what)
			}
			// Where the copy compiled here goes: another symbol (through a
			// relocation, or directly to a function of the same section,
			// as between __sched functions in .sched.text), or an
			// instruction of this function.
			mineSym, mineOff, mineExt := "", int64(0), false
			mineIdx := -1
			to := x.off + x.len + int(dx)
			if r, ok := relocIn(relocs, x); ok {
				mineSym, mineOff, mineExt = syms.branchTarget(r)
			} else if to < 0 || to > len(mine) {
				if mineSym, mineOff, mineExt = syms.symbolAt(s.Section, int64(s.Value)+int64(to)); !mineExt {
					return differs(" (to no symbol)")
				}
			} else if i, ok := ai[to]; ok {
				mineIdx = i
			} else {
				return differs(" (into the middle of an instruction)")
			}
			// Where the shipped one goes.
			if r, ok := relocIn(shipped.relocs, y); ok {
				sym, off, ok := shipped.resolve(r)
				if !ok || !mineExt || sym != mineSym || off != mineOff {
					return differs("")
				}
				continue
			}
			if mineIdx >= 0 {
				if i, ok := bi[int(target-int64(shipped.addr))]; !ok || i != mineIdx {
					return differs(" (to another instruction)")
				}
				continue
			}
			if !slices.Contains(shipped.at(uint64(target-mineOff)), mineSym) {
				return differs("")
			}
			continue
		}
		if x.len != y.len {
			return differs("")
		}
		bx2 := slices.Clone(mine[x.off : x.off+x.len])
		by2 := slices.Clone(shipped.code[y.off : y.off+y.len])
		for _, m := range []struct {
			relocs map[uint64]elfdiff.Reloc
			at     int
		}{{relocs, x.off}, {shipped.relocs, y.off}} {
			for o := m.at; o < m.at+x.len; o++ {
				if r, ok := m.relocs[uint64(o)]; ok {
					maskReloc(bx2, uint64(o-m.at), r.Type)
					maskReloc(by2, uint64(o-m.at), r.Type)
				}
			}
		}
		if !bytes.Equal(bx2, by2) {
			return differs("")
		}
	}
	return ""
}

func offset(off int64) string {
	if off == 0 {
		return ""
	}
	return fmt.Sprintf("%+#x", off)
}
