package elfdiff

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"

	"github.com/stent-dev/stent/internal/safeelf"
)

// ParseKallsyms reads the kallsyms tables that scripts/kallsyms.c compiled
// into a (stripped) vmlinux, as decompressed from a distribution's vmlinuz,
// and returns the symbols in the order the running kernel's
// kallsyms_on_each_symbol walks them: the order that livepatch symbol
// positions count in. It handles the base-relative layout with
// kallsyms_seqs_of_names (6.1.y and later) and without.
func ParseKallsyms(vmlinux []byte) (*Symtab, error) {
	ef, err := safeelf.NewBytes("vmlinux", vmlinux)
	if err != nil {
		return nil, withStack(err)
	}
	var t *Symtab
	err = ef.Do(func() (err error) {
		t, err = parseKallsyms(ef.File, vmlinux)
		return err
	})
	if err != nil {
		return nil, withStack(err)
	}
	return t, nil
}

func parseKallsyms(ef *elf.File, vmlinux []byte) (*Symtab, error) {
	ro := ef.Section(".rodata")
	if ro == nil || ro.Type != elf.SHT_PROGBITS {
		return nil, fmt.Errorf("%w: vmlinux has no .rodata section", ErrFormat)
	}
	if ro.Offset > uint64(len(vmlinux)) || ro.Size > uint64(len(vmlinux))-ro.Offset {
		return nil, fmt.Errorf("%w: vmlinux .rodata at offset %#x size %#x lies outside the file", ErrFormat, ro.Offset, ro.Size)
	}
	text := ef.Section(".text")
	if text == nil {
		return nil, fmt.Errorf("%w: vmlinux has no .text section", ErrFormat)
	}
	d := vmlinux[ro.Offset : ro.Offset+ro.Size]
	// kallsyms_relative_base is _text's link address, 8-aligned, followed by
	// kallsyms_num_syms and then kallsyms_names, each 8-aligned.
	for p := 0; p+24 <= len(d); p += 8 {
		if le.Uint64(d[p:]) != text.Addr {
			continue
		}
		n := int(le.Uint32(d[p+8:]))
		if n < 1000 || n > 10_000_000 || le.Uint32(d[p+12:]) != 0 {
			continue
		}
		if t, ok := decodeKallsyms(d, p, n); ok {
			t.Object = "vmlinux"
			return t, nil
		}
	}
	return nil, fmt.Errorf("%w: no kallsyms tables found in vmlinux .rodata (is CONFIG_KALLSYMS_BASE_RELATIVE set?)", ErrFormat)
}

var le = binary.LittleEndian

func align8(x int) int { return (x + 7) &^ 7 }

// decodeKallsyms tries the tables whose kallsyms_relative_base is at d[p:].
func decodeKallsyms(d []byte, p, n int) (*Symtab, bool) {
	base := le.Uint64(d[p:])
	names := p + 16
	// Walk the names: ULEB128 length (one or two bytes), then tokens.
	offs := make([]int, n)
	q := names
	for i := 0; i < n; i++ {
		if q >= len(d) {
			return nil, false
		}
		offs[i] = q - names
		l := int(d[q])
		q++
		if l&0x80 != 0 {
			if q >= len(d) {
				return nil, false
			}
			l = l&0x7f | int(d[q])<<7
			q++
		}
		if l == 0 {
			return nil, false
		}
		q += l
	}
	markers := align8(q)
	m := (n + 255) / 256
	if markers+4*m > len(d) {
		return nil, false
	}
	for k := 0; k < m; k++ {
		if int(le.Uint32(d[markers+4*k:])) != offs[256*k] {
			return nil, false
		}
	}
	after := align8(markers + 4*m)
	// Newer kernels put kallsyms_seqs_of_names (3 bytes a symbol) before
	// the token table; try both layouts.
	for _, tt := range []int{align8(after + 3*n), after} {
		tokens, ok := tokenTable(d, tt)
		if !ok {
			continue
		}
		offsets := p - align8(4*n)
		if offsets < 0 {
			return nil, false
		}
		t := &Symtab{Syms: make([]KSym, 0, n)}
		var buf []byte
		for i := 0; i < n; i++ {
			q := names + offs[i]
			l := int(d[q])
			q++
			if l&0x80 != 0 {
				l = l&0x7f | int(d[q])<<7
				q++
			}
			buf = buf[:0]
			for _, b := range d[q : q+l] {
				buf = append(buf, tokens[b]...)
			}
			if len(buf) < 2 {
				return nil, false
			}
			off := int32(le.Uint32(d[offsets+4*i:]))
			var addr uint64
			if off >= 0 {
				addr = uint64(off) // absolute (per-CPU) symbol
			} else {
				addr = base - 1 - uint64(int64(off))
			}
			typ := buf[0]
			t.Syms = append(t.Syms, KSym{Name: string(buf[1:]), Addr: addr, Type: typ})
		}
		return t, true
	}
	return nil, false
}

// tokenTable reads kallsyms_token_table at d[tt:] and checks it against
// kallsyms_token_index, which follows it 8-aligned.
func tokenTable(d []byte, tt int) ([][]byte, bool) {
	if tt >= len(d) {
		return nil, false
	}
	tokens := make([][]byte, 256)
	starts := make([]int, 256)
	q := tt
	for i := 0; i < 256; i++ {
		e := bytes.IndexByte(d[q:], 0)
		if e <= 0 {
			return nil, false
		}
		starts[i] = q - tt
		tokens[i] = d[q : q+e]
		q += e + 1
	}
	idx := align8(q)
	if idx+512 > len(d) {
		return nil, false
	}
	for i := 0; i < 256; i++ {
		if int(binary.LittleEndian.Uint16(d[idx+2*i:])) != starts[i] {
			return nil, false
		}
	}
	return tokens, true
}
