package elfdiff

import (
	"debug/elf"
	"errors"
	"fmt"
	"testing"
)

// klpFind is kernel/livepatch/core.c's klp_find_object_symbol over one view
// of an object's symbols (6.1): count the same-named symbols in order, stop
// at position pos (or at the second match when pos is 0).
func klpFind(view []KSym, name string, pos int) (uint64, error) {
	var addr uint64
	count := 0
	for _, s := range view {
		if s.Name != name {
			continue
		}
		addr = s.Addr
		count++
		if (pos > 0 && count == pos) || (pos == 0 && count > 1) {
			break
		}
	}
	switch {
	case count == 0:
		return 0, fmt.Errorf("symbol '%s' not found in symbol table", name)
	case count > 1 && pos == 0:
		return 0, fmt.Errorf("unresolvable ambiguity for symbol '%s'", name)
	case pos > 0 && count != pos:
		return 0, fmt.Errorf("symbol position %d for symbol '%s' not found", pos, name)
	}
	return addr, nil
}

// Same-named symbols, including ones in __init memory, get the position the
// kernel resolves to the wanted one: for vmlinux in kallsyms (which keeps
// the __init symbols); for a module both while it loads (every symbol) and
// after its init (core symbols only), or an error when no one position
// fits both.
func TestSymposDuplicates(t *testing.T) {
	const base = 0xffffffff81000000
	// vmlinux lays out .text, .data, init memory, .bss; kallsyms is in
	// address order.
	vmlinux := func(syms ...KSym) *Symtab {
		var all []KSym
		add := func(k KSym) {
			k.Addr = base + uint64(len(all))*0x40
			all = append(all, k)
		}
		for _, s := range syms {
			if s.Name == "__init_begin" || s.Name == "__init_end" {
				add(KSym{Name: s.Name, Type: 'D'})
				continue
			}
			add(s)
		}
		return &Symtab{Object: "vmlinux", Syms: all}
	}
	fill := func(prefix string, n int) []KSym {
		var out []KSym
		for i := 0; i < n; i++ {
			out = append(out, KSym{Name: fmt.Sprintf("%s_%d", prefix, i), Type: 't'})
		}
		return out
	}
	cat := func(parts ...[]KSym) (out []KSym) {
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	k := func(name string, typ byte) []KSym { return []KSym{{Name: name, Type: typ}} }
	type want struct {
		pos       int
		nth       int // the wanted symbol is the nth (1-based) called name
		ambiguous bool
		fail      bool
	}
	tests := []struct {
		name       string
		table      *Symtab
		sym        string
		global     bool
		file       string
		neighbours []string
		want       want
	}{
		{
			name:  "vmlinux: three in .text, ours among our file's neighbours",
			table: vmlinux(cat(k("c_start", 't'), fill("a", 60), fill("ours", 5), k("c_start", 't'), fill("ours_b", 5), fill("b", 60), k("c_start", 't'))...),
			sym:   "c_start", neighbours: []string{"ours_0", "ours_1", "ours_b_3"},
			want: want{pos: 2, nth: 2},
		},
		{
			// Like Debian 6.1's "debug": one in .init.data, ours in .bss
			// after it. kallsyms keeps the first: position 2, not 0.
			name:  "vmlinux: __initdata duplicate before ours",
			table: vmlinux(cat(fill("text", 10), k("__init_begin", 'D'), k("debug", 'd'), k("__init_end", 'D'), k("debug", 'b'))...),
			sym:   "debug",
			want:  want{pos: 2, nth: 2},
		},
		{
			name:  "vmlinux: __init duplicate after ours",
			table: vmlinux(cat(k("tbl_size", 't'), fill("text", 10), k("__init_begin", 'D'), k("tbl_size", 'd'), k("__init_end", 'D'))...),
			sym:   "tbl_size",
			want:  want{pos: 1, nth: 1},
		},
		{
			// The __init one sits among our file's __init neighbours: it
			// is never chosen.
			name:  "vmlinux: __init duplicate among our neighbours",
			table: vmlinux(cat(k("foo", 't'), fill("x", 60), k("__init_begin", 'D'), fill("ours_init", 5), k("foo", 't'), k("__init_end", 'D'))...),
			sym:   "foo", neighbours: []string{"ours_init_0", "ours_init_1", "ours_init_2"},
			want: want{pos: 1, nth: 1},
		},
		{
			name:  "vmlinux: two live, no evidence",
			table: vmlinux(cat(k("bar", 't'), fill("x", 60), k("bar", 't'), k("__init_begin", 'D'), k("bar", 't'), k("__init_end", 'D'))...),
			sym:   "bar",
			want:  want{ambiguous: true},
		},
		{
			name:  "vmlinux: only __init",
			table: vmlinux(cat(fill("x", 3), k("__init_begin", 'D'), k("baz", 't'), k("baz", 't'), k("__init_end", 'D'))...),
			sym:   "baz",
			want:  want{fail: true},
		},
		{
			name:  "vmlinux: the global one",
			table: vmlinux(cat(k("dup", 't'), k("dup", 'T'), k("dup", 't'))...),
			sym:   "dup", global: true,
			want: want{pos: 2, nth: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.table.Position(tt.sym, tt.global, tt.file, tt.neighbours)
			switch {
			case tt.want.ambiguous:
				var ae *ErrAmbiguous
				if !errors.As(err, &ae) || ae.Count != 2 {
					t.Fatalf("Position(%s) = %d, %v, want ErrAmbiguous between 2", tt.sym, got, err)
				}
				return
			case tt.want.fail:
				if err == nil {
					t.Fatalf("Position(%s) = %d, want an error", tt.sym, got)
				}
				return
			case err != nil || got != tt.want.pos:
				t.Fatalf("Position(%s) = %d, %v, want %d", tt.sym, got, err, tt.want.pos)
			}
			wantAddr := tt.table.Syms[tt.table.indexOf(tt.sym)[tt.want.nth-1]].Addr
			if a, err := klpFind(tt.table.Syms, tt.sym, got); err != nil || a != wantAddr {
				t.Errorf("kernel lookup of %s,%d = %#x, %v, want %#x", tt.sym, got, a, err, wantAddr)
			}
		})
	}
}

// moduleKO builds the symbol table of a .ko: files in link order, each
// with its symbols and the sections they are in.
func moduleKO(files ...[]*Symbol) *File {
	f := &File{Symbols: []*Symbol{{}}}
	for i, syms := range files {
		f.Symbols = append(f.Symbols, &Symbol{Name: fmt.Sprintf("f%d.c", i), Type: elf.STT_FILE, Shndx: elf.SHN_ABS})
		f.Symbols = append(f.Symbols, syms...)
	}
	for i, s := range f.Symbols[1:] {
		s.Value = uint64(i) * 0x10
	}
	return f
}

func TestSymposModuleInit(t *testing.T) {
	text := &Section{Name: ".text", Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR}
	initText := &Section{Name: ".init.text", Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR}
	bss := &Section{Name: ".bss", Flags: elf.SHF_ALLOC | elf.SHF_WRITE}
	fn := func(name string, s *Section) *Symbol {
		return &Symbol{Name: name, Bind: elf.STB_LOCAL, Type: elf.STT_FUNC, Section: s}
	}
	undef := &Symbol{Name: "helper", Bind: elf.STB_GLOBAL, Shndx: elf.SHN_UNDEF}
	tests := []struct {
		name    string
		ko      *File
		file    string // the wanted one's source file
		want    int
		wantErr bool
	}{
		{"__init duplicate in a later file", moduleKO([]*Symbol{fn("setup", text), undef}, []*Symbol{fn("setup", initText)}), "f0.c", 1, false},
		{"__init duplicate in an earlier file", moduleKO([]*Symbol{fn("setup", initText)}, []*Symbol{fn("setup", text)}), "f1.c", 0, true},
		{"__init duplicate in the same file, after", moduleKO([]*Symbol{fn("setup", bss), fn("setup", initText)}), "f0.c", 1, false},
		{"two live and one __init", moduleKO([]*Symbol{fn("setup", text)}, []*Symbol{fn("setup", text)}, []*Symbol{fn("setup", initText)}), "f1.c", 2, false},
		{"unique", moduleKO([]*Symbol{fn("setup", text), undef}, []*Symbol{{Name: "setup", Bind: elf.STB_GLOBAL, Shndx: elf.SHN_UNDEF}}), "f0.c", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ModuleSymtab("mymod", tt.ko)
			got, err := st.Position("setup", false, tt.file, nil)
			if tt.wantErr {
				var ie *InitBeforeError
				if !errors.As(err, &ie) || ie.Loading != 2 || ie.Loaded != 1 {
					t.Fatalf("Position = %d, %v, want an InitBeforeError with positions 2 and 1", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Position = %d, %v, want %d", got, err, tt.want)
			}
			var wantAddr uint64
			for _, k := range st.Syms {
				if k.Name == "setup" && k.File == tt.file && !k.Init {
					wantAddr = k.Addr
				}
			}
			// While the module loads (patch applied first) the kernel
			// walks every symbol; after its init, the core ones.
			var core []KSym
			for _, k := range st.Syms {
				if !k.Init {
					core = append(core, k)
				}
			}
			for view, syms := range map[string][]KSym{"loading": st.Syms, "loaded": core} {
				if a, err := klpFind(syms, "setup", got); err != nil || a != wantAddr {
					t.Errorf("kernel lookup of setup,%d in the %s module = %#x, %v, want %#x", got, view, a, err, wantAddr)
				}
			}
		})
	}
}
