package elfdiff

import (
	"debug/elf"
	"fmt"
	"sort"
	"strings"
)

// ConvertModule turns a kernel module linked by kbuild from objects made by
// Diff into a livepatch module: undefined .klp.sym.<obj>.<name>,<pos>
// symbols get section index SHN_LIVEPATCH and the relocations against them
// move into .klp.rela.<obj>.<section> sections flagged SHF_RELA_LIVEPATCH
// (Documentation/livepatch/module-elf-format.rst). It returns the new
// module bytes and the livepatch symbols it marked.
//
// owners names the livepatch object whose code a section holds, by section
// name, for sections whose livepatch symbols belong to another module than
// the one the code patches (a module calling an export of a module it
// depends on); other sections take the object of their symbols.
func ConvertModule(ko []byte, owners map[string]string) ([]byte, []string, error) {
	f, err := Read(ko)
	if err != nil {
		return nil, nil, fmt.Errorf("read module: %w", err)
	}
	var marked []string
	for _, s := range f.Symbols[1:] {
		if !strings.HasPrefix(s.Name, ".klp.sym.") {
			continue
		}
		obj, _, err := parseKLPSym(s.Name)
		if err != nil {
			return nil, nil, err
		}
		_ = obj
		if s.Section != nil {
			return nil, nil, fmt.Errorf("livepatch symbol %s is defined in section %s", s.Name, s.Section.Name)
		}
		s.Shndx = SHN_LIVEPATCH
		s.Bind = elf.STB_GLOBAL
		marked = append(marked, s.Name)
	}
	for _, sec := range f.Sections[1:] {
		var keep, klp []Reloc
		objs := map[string]bool{}
		for _, r := range sec.Relocs {
			if r.Sym.Shndx == SHN_LIVEPATCH && strings.HasPrefix(r.Sym.Name, ".klp.sym.") {
				obj, _, _ := parseKLPSym(r.Sym.Name)
				objs[obj] = true
				klp = append(klp, r)
			} else {
				keep = append(keep, r)
			}
		}
		if len(klp) == 0 {
			continue
		}
		if sec.Flags&elf.SHF_ALLOC == 0 {
			// Debug information and the like: drop references the loader
			// will never resolve.
			sec.Relocs = keep
			continue
		}
		owner := owners[sec.Name]
		if owner == "" && len(objs) == 1 {
			for o := range objs {
				owner = o
			}
		}
		if owner == "" || (objs["vmlinux"] && (owner != "vmlinux" || len(objs) > 1)) {
			names := make([]string, 0, len(objs))
			for o := range objs {
				names = append(names, o)
			}
			sort.Strings(names)
			return nil, nil, fmt.Errorf("section %s has livepatch relocations against symbols of %s and no single object owns it", sec.Name, strings.Join(names, ", "))
		}
		sec.KLPObject = owner
		sec.Relocs = keep
		sec.KLPRelocs = append(sec.KLPRelocs, klp...)
	}
	out, err := Write(f)
	if err != nil {
		return nil, nil, err
	}
	return out, marked, nil
}

// parseKLPSym splits ".klp.sym.<obj>.<name>,<pos>".
func parseKLPSym(s string) (obj, name string, err error) {
	rest := strings.TrimPrefix(s, ".klp.sym.")
	obj, rest, ok := strings.Cut(rest, ".")
	if !ok || obj == "" {
		return "", "", fmt.Errorf("livepatch symbol %q has no object name", s)
	}
	i := strings.LastIndexByte(rest, ',')
	if i <= 0 {
		return "", "", fmt.Errorf("livepatch symbol %q has no position", s)
	}
	return obj, rest[:i], nil
}
