package elfdiff

import (
	"debug/elf"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// placed records a byte range of a patched-object section copied into the
// output.
type placed struct {
	in         *Section
	start, end uint64 // range in the input section
	out        *Section
	at         uint64 // offset in the output section
	done       bool   // relocations converted
}

// builder assembles the output object.
type builder struct {
	d            *differ
	out          *File
	changed      map[*Symbol]bool
	constChanged map[*Symbol]bool
	ranges       []*placed
	bySec        map[*Section][]*placed
	outSec       map[string]*Section
	symMap       map[*Symbol]*Symbol // patched symbol -> output symbol
	ext          map[string]*Symbol  // undefined output symbols by name
	entriesDone  map[*Section]map[uint64]bool
	newFuncs     []string
	newData      []string
	warnings     []string
}

func newBuilder(d *differ, changed, constChanged map[*Symbol]bool) *builder {
	out := &File{Machine: d.p.f.Machine, OSABI: d.p.f.OSABI, Flags: d.p.f.Flags, Sections: []*Section{{}}, Symbols: []*Symbol{{}}}
	return &builder{
		d: d, out: out, changed: changed, constChanged: constChanged,
		bySec: map[*Section][]*placed{}, outSec: map[string]*Section{},
		symMap: map[*Symbol]*Symbol{}, ext: map[string]*Symbol{},
		entriesDone: map[*Section]map[uint64]bool{},
	}
}

// section returns the output section called name, creating it like in.
func (b *builder) section(name string, in *Section) *Section {
	if s := b.outSec[name]; s != nil {
		return s
	}
	s := &Section{Name: name, Type: in.Type, Flags: in.Flags &^ elf.SHF_GROUP, Addralign: in.Addralign, Entsize: in.Entsize}
	b.outSec[name] = s
	b.out.Sections = append(b.out.Sections, s)
	return s
}

// place copies bytes [start,end) of input section in into the output
// section of the same name, unless already there, and returns the record.
func (b *builder) place(in *Section, start, end uint64) *placed {
	for _, p := range b.bySec[in] {
		// An empty range (a zero-length alternative replacement) at the
		// end of a placed one is not inside it.
		if start >= p.start && end <= p.end && (start < p.end || p.start == p.end) {
			return p
		}
	}
	out := b.section(in.Name, in)
	align := max(in.Addralign, 1)
	at := (out.Size + align - 1) / align * align
	if in.Type == elf.SHT_NOBITS {
		out.Size = at + (end - start)
	} else {
		for uint64(len(out.Data)) < at {
			out.Data = append(out.Data, 0)
		}
		out.Data = append(out.Data, in.Data[start:end]...)
		out.Size = uint64(len(out.Data))
	}
	p := &placed{in: in, start: start, end: end, out: out, at: at}
	b.ranges = append(b.ranges, p)
	b.bySec[in] = append(b.bySec[in], p)
	return p
}

// lookup maps an offset of an input section to the output.
func (b *builder) lookup(in *Section, off int64) (*placed, uint64, bool) {
	for _, p := range b.bySec[in] {
		if off >= int64(p.start) && (off < int64(p.end) || off == int64(p.end) && (p.end == p.start || p.end == in.Size)) {
			return p, p.at + uint64(off-int64(p.start)), true
		}
	}
	return nil, 0, false
}

// include copies function or object s (and a function's .cold part) into
// the output, once, and gives it an output symbol.
func (b *builder) include(s *Symbol) *Symbol {
	if o := b.symMap[s]; o != nil {
		return o
	}
	size := s.Size
	start := s.Value
	if size == 0 && s.Section.Type != elf.SHT_NOBITS {
		size = s.Section.Size - start
	}
	p := b.place(s.Section, start, start+size)
	o := &Symbol{Name: s.Name, Bind: elf.STB_LOCAL, Type: s.Type, Other: s.Other, Section: p.out,
		Value: p.at + (s.Value - p.start), Size: s.Size}
	b.out.Symbols = append(b.out.Symbols, o)
	b.symMap[s] = o
	if s.Type == elf.STT_FUNC {
		if b.d.twin[s] == nil && b.d.p.parent[s] == nil {
			b.newFuncs = append(b.newFuncs, s.Name)
		}
		if c := b.d.p.cold[s]; c != nil {
			b.include(c)
		}
	} else if b.d.twin[s] == nil || isFreshStatic(s) || b.constChanged[s] {
		if b.d.twin[s] == nil {
			b.checkOrphanStatic(s)
		}
		b.newData = append(b.newData, s.Name)
	}
	return o
}

// checkOrphanStatic refuses a writable static s of the patched object that
// has no twin although the original has an unpaired static of the same
// name: the fix moved it to another function (or GCC inlined its user
// elsewhere), so correlation by users failed. Carried as new data it would
// start from a fresh, zeroed copy while the running kernel keeps its state
// in the original: a counter restarts, a lock stops excluding the code
// that still takes the original, a list loses its entries.
func (b *builder) checkOrphanStatic(s *Symbol) {
	if s.Bind != elf.STB_LOCAL || isFreshStatic(s) || s.Section == nil ||
		(s.Section.Flags&elf.SHF_WRITE == 0 && s.Section.Type != elf.SHT_NOBITS) {
		return
	}
	paired := map[*Symbol]bool{}
	for _, o := range b.d.twin {
		paired[o] = true
	}
	for _, o := range b.d.o.f.Symbols[1:] {
		if o.Section != nil && o.Type == elf.STT_OBJECT && o.Bind == elf.STB_LOCAL && !paired[o] && stripNumbers(o.Name) == stripNumbers(s.Name) {
			var users []string
			for _, u := range b.d.p.users[s] {
				users = append(users, u.Name)
			}
			b.d.refuse(RuleDataChanged, stripNumbers(s.Name), fmt.Sprintf("static %s of the patched code (used by %s) cannot be matched with the running kernel's %s: the fix moves it to another function, so the patched code would start from a fresh, zeroed copy while the running kernel keeps its state in the original",
				s.Name, strings.Join(users, ", "), o.Name),
				"keep the static variable in the function that had it, or make it a file-scope static so that the patched code uses the running kernel's copy; or reboot into a fixed kernel")
			return
		}
	}
}

// mustInclude says whether a reference from carried code to s must reach a
// copy in the patch module rather than the running kernel's original.
func (b *builder) mustInclude(s *Symbol) bool {
	if s.Section == nil {
		return false
	}
	if b.symMap[s] != nil {
		return true
	}
	if s.Type == elf.STT_FUNC {
		if b.d.p.parent[s] != nil {
			return b.mustInclude(b.d.p.parent[s]) || b.changed[b.d.p.parent[s]]
		}
		return b.changed[s] || b.d.twin[s] == nil
	}
	return b.d.twin[s] == nil || isFreshStatic(s) || b.constChanged[s]
}

func (b *builder) build(roots []*Symbol) error {
	for _, r := range roots {
		b.include(r)
	}
	for {
		progress := false
		for i := 0; i < len(b.ranges); i++ {
			if b.ranges[i].done {
				continue
			}
			if err := b.convert(b.ranges[i]); err != nil {
				return err
			}
			progress = true
		}
		n, err := b.specialEntries()
		if err != nil {
			return err
		}
		if !progress && n == 0 {
			break
		}
	}
	b.checkUnknownSpecials()
	b.out.Sections = append(b.out.Sections, &Section{Name: ".note.GNU-stack", Type: elf.SHT_PROGBITS, Addralign: 1})
	// Deterministic relocation order.
	for _, s := range b.out.Sections {
		sort.SliceStable(s.Relocs, func(i, j int) bool { return s.Relocs[i].Offset < s.Relocs[j].Offset })
		sort.SliceStable(s.KLPRelocs, func(i, j int) bool { return s.KLPRelocs[i].Offset < s.KLPRelocs[j].Offset })
	}
	return nil
}

// convert copies the relocations inside placed range p to the output.
func (b *builder) convert(p *placed) error {
	p.done = true
	for _, r := range p.in.Relocs {
		if r.Offset < p.start || r.Offset >= p.end {
			continue
		}
		nr, err := b.convertReloc(p.in, r)
		if err != nil {
			return err
		}
		if nr == nil {
			continue
		}
		nr.Offset = p.at + (r.Offset - p.start)
		b.addReloc(p.out, *nr)
	}
	return nil
}

func (b *builder) addReloc(s *Section, r Reloc) { s.Relocs = append(s.Relocs, r) }

// convertReloc turns relocation r of input section in into one of the
// output (offset filled in by the caller).
func (b *builder) convertReloc(in *Section, r Reloc) (*Reloc, error) {
	s := r.Sym
	if s.Section != nil && isInit(s.Section) {
		b.d.refuse(RuleInitChanged, s.Name, "carried code refers to "+s.Name+" in "+s.Section.Name+", which the kernel freed after boot", suggestInit)
		return nil, nil
	}
	// Direct references to functions and objects.
	if s.Type == elf.STT_FUNC || s.Type == elf.STT_OBJECT || (s.Section == nil && s.Type != elf.STT_SECTION) {
		if s.Section != nil && b.mustInclude(s) {
			return &Reloc{Type: r.Type, Sym: b.include(s), Addend: r.Addend}, nil
		}
		e, err := b.external(s)
		if err != nil && b.copyable(s) {
			return &Reloc{Type: r.Type, Sym: b.include(s), Addend: r.Addend}, nil
		}
		if err != nil {
			return nil, err
		}
		return &Reloc{Type: r.Type, Sym: e, Addend: r.Addend}, nil
	}
	if s.Section == nil {
		return nil, fmt.Errorf("%s: relocation at %s+%#x names section symbol %q without a section", b.d.opts.File, in.Name, r.Offset, s.Name)
	}
	// Section (or label) references: find the symbol reached.
	t, toff := b.d.p.target(in, r)
	if t != nil {
		if b.mustInclude(t) {
			o := b.include(t)
			return &Reloc{Type: r.Type, Sym: o, Addend: toff}, nil
		}
		e, err := b.external(t)
		if err != nil && b.copyable(t) {
			return &Reloc{Type: r.Type, Sym: b.include(t), Addend: toff}, nil
		}
		if err != nil {
			return nil, err
		}
		return &Reloc{Type: r.Type, Sym: e, Addend: toff}, nil
	}
	// Anonymous data: string literals and compiler constants are copied
	// whole; the relocation then points at the copy.
	tgt := int64(s.Value) + r.Addend + b.d.p.insnEnd(in, r)
	pl, at, ok := b.lookup(s.Section, tgt)
	if !ok {
		sec := s.Section
		switch {
		case ignoredSection(sec.Name) && sec.Name != ".altinstr_replacement":
			return nil, nil
		case sec.Flags&elf.SHF_WRITE != 0 && sec.Flags&elf.SHF_EXECINSTR == 0:
			b.d.refuse(RuleWritableAnon, in.Name, fmt.Sprintf("carried code refers to writable data at %s+%#x that has no symbol", sec.Name, tgt), suggestReboot)
			return nil, nil
		case sec.Flags&elf.SHF_EXECINSTR != 0:
			// A code fragment outside any function, such as the
			// .altinstr_aux tail of static_cpu_has(): copy it up to its
			// final jump.
			end, ok := fragmentEnd(sec.Data, tgt)
			if !ok {
				b.d.refuse(RuleSpecial, in.Name, fmt.Sprintf("carried code jumps to code at %s+%#x that has no function symbol and no end", sec.Name, tgt), suggestReboot)
				return nil, nil
			}
			pl = b.place(sec, uint64(tgt), uint64(end))
		default:
			pl = b.place(sec, 0, sec.Size)
		}
		_, at, _ = b.lookup(s.Section, tgt)
	}
	return &Reloc{Type: r.Type, Sym: b.out.SectionSymbol(pl.out), Addend: int64(at) - (tgt - int64(s.Value) - r.Addend)}, nil
}

// fragmentEnd returns where the code fragment at off ends: after its first
// unconditional jump, return or ud2.
func fragmentEnd(code []byte, off int64) (int64, bool) {
	for p := off; p >= 0 && p < int64(len(code)); {
		in, err := x86asm.Decode(code[p:], 64)
		if err != nil || in.Len == 0 {
			return 0, false
		}
		p += int64(in.Len)
		switch in.Op {
		case x86asm.JMP, x86asm.RET, x86asm.UD2, x86asm.LJMP:
			return p, true
		}
	}
	return 0, false
}

// copyable reports whether carried code may use a copy of s when the
// running kernel's symbol table does not list it (kernels without
// CONFIG_KALLSYMS_ALL list no data): constant data, which nothing writes.
func (b *builder) copyable(s *Symbol) bool {
	return s.Section != nil && s.Type == elf.STT_OBJECT && s.Section.Flags&elf.SHF_WRITE == 0 &&
		s.Section.Type != elf.SHT_NOBITS && !isInit(s.Section)
}

// external returns the output symbol through which carried code reaches
// patched-object symbol s in the running kernel: an ordinary undefined
// symbol for an exported one, otherwise a .klp.sym symbol.
func (b *builder) external(s *Symbol) (*Symbol, error) {
	name := s.Name
	global := s.Bind != elf.STB_LOCAL
	defined := s.Section != nil
	if defined {
		o := b.d.twin[s]
		if o == nil {
			return nil, fmt.Errorf("%s: %s is new but was not carried", b.d.opts.File, s.Name)
		}
		name, global = o.Name, o.Bind != elf.STB_LOCAL
	}
	if !defined && global && b.d.opts.Provided(name) {
		return b.undef(name), nil // added by another file of the fix
	}
	obj := b.d.opts.Object
	owner, exported := b.d.opts.Exported(name)
	switch {
	case obj == "vmlinux" && exported && owner == "vmlinux" && global:
		return b.undef(name), nil
	case obj == "vmlinux" && !defined && (b.d.opts.Symtab == nil || !b.d.opts.Symtab.Has(name)):
		b.d.refuse(RuleUnresolvable, name, fmt.Sprintf("carried code refers to %s, which is not in vmlinux's symbol table and which no other file of the fix defines", name),
			"if the fix adds "+name+" in another file, include that file's change in the fix (or build it with --object); otherwise reboot into a fixed kernel")
		return b.undef(name), nil
	case obj == "vmlinux":
		pos, err := b.symPos(name, global, defined)
		if err != nil {
			return nil, err
		}
		return b.undef(fmt.Sprintf(".klp.sym.vmlinux.%s,%d", name, pos)), nil
	}
	// A module: symbols of the module itself go through livepatch
	// relocations, so that the patch works whether the module loads before
	// or after it; vmlinux exports stay ordinary; other modules' exports
	// become livepatch symbols of that module.
	if defined || (b.d.opts.Symtab != nil && b.d.opts.Symtab.Has(name)) {
		pos, err := b.symPos(name, global, defined)
		if err != nil {
			return nil, err
		}
		return b.undef(fmt.Sprintf(".klp.sym.%s.%s,%d", obj, name, pos)), nil
	}
	if exported && owner == "vmlinux" {
		return b.undef(name), nil
	}
	if exported {
		return b.undef(fmt.Sprintf(".klp.sym.%s.%s,0", owner, name)), nil
	}
	b.d.refuse(RuleUnresolvable, name, fmt.Sprintf("carried code of module %s refers to %s, which neither the module defines nor any object exports", obj, name), suggestReboot)
	return b.undef(name), nil
}

func (b *builder) symPos(name string, global, defined bool) (int, error) {
	if b.d.opts.Symtab == nil {
		return 0, fmt.Errorf("%s: no symbol table of %s to place %s", b.d.opts.File, b.d.opts.Object, name)
	}
	file := ""
	var nb []string
	if defined {
		file = b.d.opts.File
		nb = b.d.neighbours()
	}
	pos, err := b.d.opts.Symtab.Position(name, global, file, nb)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", b.d.opts.File, err)
	}
	return pos, nil
}

func (b *builder) undef(name string) *Symbol {
	if s := b.ext[name]; s != nil {
		return s
	}
	s := &Symbol{Name: name, Bind: elf.STB_GLOBAL, Type: elf.STT_NOTYPE, Shndx: elf.SHN_UNDEF}
	b.ext[name] = s
	b.out.Symbols = append(b.out.Symbols, s)
	return s
}

// alias adds global symbol name for the output copy of function p.
func (b *builder) alias(p *Symbol, name string) {
	o := b.symMap[p]
	b.out.Symbols = append(b.out.Symbols, &Symbol{Name: name, Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC,
		Section: o.Section, Value: o.Value, Size: o.Size})
}

// specialEntries copies the special-section entries tied to carried
// functions, with their paired and carved data. It returns how many it
// added.
func (b *builder) specialEntries() (int, error) {
	added := 0
	for _, sec := range b.d.p.special {
		sp := specialOf(sec.Name)
		done := b.entriesDone[sec]
		if done == nil {
			done = map[uint64]bool{}
			b.entriesDone[sec] = done
		}
		var starts []uint64
		for _, r := range sec.Relocs {
			if r.Offset%uint64(sp.size) != uint64(sp.anchor) {
				continue
			}
			start := r.Offset - uint64(sp.anchor)
			if done[start] {
				continue
			}
			t, _ := b.d.p.target(sec, r)
			if t == nil || b.symMap[t] == nil || t.Type != elf.STT_FUNC {
				continue
			}
			starts = append(starts, start)
		}
		sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
		for _, start := range starts {
			done[start] = true
			if start+uint64(sp.size) > uint64(len(sec.Data)) {
				return 0, fmt.Errorf("%s: %s entry at %#x runs past the section", b.d.opts.File, sec.Name, start)
			}
			if b.dropModuleKeyEntry(sec, start) {
				continue
			}
			if sp.carve != "" {
				e := entry{sec: sec, sp: sp, start: start}
				if rg, cs, ok := carvedRange(b.d.p, e); ok {
					b.place(cs, uint64(rg[0]), uint64(rg[1]))
				}
			}
			p := b.place(sec, start, start+uint64(sp.size))
			if sp.pair != "" {
				ps := b.d.p.f.Section(sp.pair)
				i := start / uint64(sp.size)
				if ps == nil || (i+1)*uint64(sp.pairSize) > uint64(len(ps.Data)) {
					return 0, fmt.Errorf("%s: %s has no entry %d for %s", b.d.opts.File, sp.pair, i, sec.Name)
				}
				// Keep the pair index for index: both sections grow together.
				pp := b.place(ps, i*uint64(sp.pairSize), (i+1)*uint64(sp.pairSize))
				if pp.at/uint64(sp.pairSize) != p.at/uint64(sp.size) {
					return 0, fmt.Errorf("%s: %s and %s entries out of step", b.d.opts.File, sec.Name, sp.pair)
				}
			}
			if err := b.convert(p); err != nil {
				return 0, err
			}
			added++
		}
	}
	return added, nil
}

// dropModuleKeyEntry handles jump labels and static calls in carried code
// whose key lives in a module (the patched module or one it uses). The
// kernel sets those entries up when the patch module loads, before
// livepatch relocations to other modules are written, so they cannot be
// carried. A tracepoint's jump label is dropped, leaving the tracepoint off
// in the new copy of the function (a warning says so); a static call site is
// dropped, leaving the call to go through the key's trampoline, which the
// kernel keeps current; any other static key is refused.
func (b *builder) dropModuleKeyEntry(sec *Section, start uint64) bool {
	keyOff := map[string]uint64{"__jump_table": 8, ".static_call_sites": 4}
	off, ok := keyOff[sec.Name]
	if !ok {
		return false
	}
	for _, r := range sec.Relocs {
		if r.Offset != start+off {
			continue
		}
		t, _ := b.d.p.target(sec, r)
		if t == nil || b.mustInclude(t) {
			return false
		}
		name := t.Name
		if o := b.d.twin[t]; o != nil {
			name = o.Name
		}
		if !b.moduleSymbol(t, name) {
			return false
		}
		fn := ""
		for _, a := range sec.Relocs {
			if a.Offset == start {
				if f, _ := b.d.p.target(sec, a); f != nil {
					fn = f.Name
				}
			}
		}
		switch {
		case sec.Name == ".static_call_sites":
			return true
		case strings.HasPrefix(name, "__tracepoint_"):
			b.warnings = append(b.warnings, fmt.Sprintf("%s: tracepoint %s stays off in the patched %s (its key lives in module %s)",
				b.d.opts.File, strings.TrimPrefix(name, "__tracepoint_"), fn, b.d.opts.Object))
			return true
		default:
			b.d.refuse(RuleModuleKey, name, fmt.Sprintf("%s uses static key %s of a module through %s, which the kernel sets up before the module's livepatch relocations are written", fn, name, sec.Name),
				"rewrite the fix to test the key with static_key_enabled() instead of a static branch, or reboot into a fixed kernel")
			return true
		}
	}
	return false
}

// moduleSymbol reports whether carried code reaches s (original name
// name) in a module rather than in vmlinux.
func (b *builder) moduleSymbol(s *Symbol, name string) bool {
	if b.d.opts.Object == "vmlinux" {
		return false
	}
	if s.Section != nil || (b.d.opts.Symtab != nil && b.d.opts.Symtab.Has(name)) {
		return true
	}
	owner, ok := b.d.opts.Exported(name)
	return ok && owner != "vmlinux"
}

// checkUnknownSpecials refuses sections the builder does not know that tie
// entries to carried code.
func (b *builder) checkUnknownSpecials() {
	for _, sec := range b.d.p.f.Sections[1:] {
		if specialOf(sec.Name) != nil || ignoredSection(sec.Name) || len(b.d.p.bySec[sec]) > 0 || len(sec.Relocs) == 0 || isCode(sec) {
			continue
		}
		if isStrings(sec) || strings.HasPrefix(sec.Name, ".rodata") || strings.HasPrefix(sec.Name, ".data") || strings.HasPrefix(sec.Name, ".text") {
			continue
		}
		for _, r := range sec.Relocs {
			t, _ := b.d.p.target(sec, r)
			if t != nil && t.Type == elf.STT_FUNC && b.symMap[t] != nil {
				b.d.refuse(RuleSpecial, t.Name, fmt.Sprintf("section %s has entries for %s and the builder does not know its layout", sec.Name, t.Name), "teach elfdiff the entry size of "+sec.Name+" (elfdiff/special.go), or reboot into a fixed kernel")
				break
			}
		}
	}
}
