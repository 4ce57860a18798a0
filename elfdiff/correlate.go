package elfdiff

import (
	"debug/elf"
	"strings"
)

// correlate pairs every function and object symbol of the patched object
// with its twin in the original, returning patched -> original. Names match
// exactly where they are unique; compiler-numbered names (foo.isra.1,
// foo.constprop.0, foo.part.2, foo.cold, count.3) match by their name without
// numbers, and static local variables by the functions that use them.
func correlate(orig, patched *object) map[*Symbol]*Symbol {
	twin := map[*Symbol]*Symbol{}
	used := map[*Symbol]bool{}
	kind := func(s *Symbol) bool {
		return s.Section != nil && (s.Type == elf.STT_FUNC || s.Type == elf.STT_OBJECT)
	}
	count := func(f *File) map[string]int {
		m := map[string]int{}
		for _, s := range f.Symbols[1:] {
			if kind(s) {
				m[s.Name]++
			}
		}
		return m
	}
	oc, pc := count(orig.f), count(patched.f)
	byName := map[string]*Symbol{}
	for _, s := range orig.f.Symbols[1:] {
		if kind(s) && oc[s.Name] == 1 {
			byName[s.Name] = s
		}
	}
	match := func(p, o *Symbol) {
		twin[p] = o
		used[o] = true
	}
	// 1. Unique exact names, same type. A numbered static local (count.3)
	// only matches exactly when its users agree, below.
	for _, p := range patched.f.Symbols[1:] {
		if !kind(p) || pc[p.Name] != 1 {
			continue
		}
		o := byName[p.Name]
		if o == nil || o.Type != p.Type || used[o] {
			continue
		}
		if p.Bind == elf.STB_LOCAL && stripNumbers(p.Name) != p.Name {
			// Compiler-numbered: numbers move, so match by stem below.
			continue
		}
		match(p, o)
	}
	// 2. Numbered names by their stem. Functions first, so that static
	// locals can then be matched through the functions that use them.
	stem := func(s *Symbol) string { return stripNumbers(s.Name) }
	unmatched := func(f *File, typ elf.SymType, isOrig bool) map[string][]*Symbol {
		m := map[string][]*Symbol{}
		for _, s := range f.Symbols[1:] {
			if !kind(s) || s.Type != typ {
				continue
			}
			if isOrig && used[s] {
				continue
			}
			if !isOrig && twin[s] != nil {
				continue
			}
			m[stem(s)] = append(m[stem(s)], s)
		}
		return m
	}
	pf, of := unmatched(patched.f, elf.STT_FUNC, false), unmatched(orig.f, elf.STT_FUNC, true)
	for k, ps := range pf {
		// A single candidate on each side is safe; the rest are paired by
		// content (differ.correlateByContent).
		if os := of[k]; len(ps) == 1 && len(os) == 1 {
			match(ps[0], os[0])
		}
	}
	// 3. Objects: by stem and by the twins of their users.
	po, oo := unmatched(patched.f, elf.STT_OBJECT, false), unmatched(orig.f, elf.STT_OBJECT, true)
	for k, ps := range po {
		os := oo[k]
		for _, p := range ps {
			var best *Symbol
			n := 0
			for _, o := range os {
				if used[o] {
					continue
				}
				if sameUsers(patched, orig, twin, p, o) {
					best = o
					n++
				}
			}
			if n == 1 {
				match(p, best)
			}
		}
		// Globals and file-scope statics with unnumbered names that had
		// duplicates: pair one-to-one leftovers.
		var lp, lo []*Symbol
		for _, p := range ps {
			if twin[p] == nil {
				lp = append(lp, p)
			}
		}
		for _, o := range os {
			if !used[o] {
				lo = append(lo, o)
			}
		}
		if len(lp) == 1 && len(lo) == 1 && (len(patched.users[lp[0]]) == 0 || !strings.Contains(lp[0].Name, ".")) {
			match(lp[0], lo[0])
		}
	}
	return twin
}

// sameUsers reports whether static local p (patched) and o (original) are
// used by corresponding functions: at least one function using p has a
// twin using o, or neither is used by any function.
func sameUsers(patched, orig *object, twin map[*Symbol]*Symbol, p, o *Symbol) bool {
	pu, ou := patched.users[p], orig.users[o]
	if len(pu) == 0 && len(ou) == 0 {
		return true
	}
	for _, u := range pu {
		t := twin[u]
		if t == nil {
			continue
		}
		for _, v := range ou {
			if v == t {
				return true
			}
		}
	}
	return false
}
