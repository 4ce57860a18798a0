package elfdiff

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"sort"
	"strings"
)

// objectDWARF returns the DWARF of the relocatable object raw, or nil when
// it has none or it cannot be read. debug/elf and debug/dwarf may panic on
// malformed input: callers recover.
func objectDWARF(raw []byte) *dwarf.Data {
	ef, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	dw, err := ef.DWARF()
	if err != nil {
		return nil
	}
	return dw
}

// structLayouts reads the named struct and union types of an object's DWARF
// and describes each one's layout: size, and every member's name, offset,
// bit position and size. A name defined more than once (in different
// scopes) keeps all its layouts, sorted. Without DWARF, or on any trouble
// reading it, the map is empty.
func structLayouts(raw []byte) (m map[string]string) {
	m = map[string]string{}
	defer func() {
		if recover() != nil {
			m = map[string]string{}
		}
	}()
	dw := objectDWARF(raw)
	if dw == nil {
		return m
	}
	all := map[string]map[string]bool{}
	r := dw.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType && e.Tag != dwarf.TagUnionType {
			continue
		}
		if decl, _ := e.Val(dwarf.AttrDeclaration).(bool); decl {
			continue
		}
		t, err := dw.Type(e.Offset)
		if err != nil {
			continue
		}
		st, ok := t.(*dwarf.StructType)
		if !ok || st.StructName == "" || st.Incomplete {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d{", st.ByteSize)
		for _, f := range st.Field {
			size := int64(-1)
			if f.Type != nil {
				size = f.Type.Size()
			}
			fmt.Fprintf(&b, "%s@%d:%d:%d:%d;", f.Name, f.ByteOffset, f.BitSize, f.DataBitOffset+f.BitOffset, size)
		}
		b.WriteString("}")
		key := st.Kind + " " + st.StructName
		if all[key] == nil {
			all[key] = map[string]bool{}
		}
		all[key][b.String()] = true
	}
	for k, set := range all {
		var l []string
		for s := range set {
			l = append(l, s)
		}
		sort.Strings(l)
		m[k] = strings.Join(l, " | ")
	}
	return m
}

// checkLayouts refuses a fix that changes the layout of a struct or union
// both objects define (a header or the file itself): the running kernel's
// instances keep the old layout, which the patched code would misread.
// Without DWARF on both sides nothing is checked.
func (d *differ) checkLayouts() {
	lo, lp := structLayouts(d.o.f.raw), structLayouts(d.p.f.raw)
	var names []string
	for name, p := range lp {
		if o, ok := lo[name]; ok && o != p {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		d.refuse(RuleDataChanged, name, fmt.Sprintf("the fix changes the layout of %s (its size or the offset, size or type of a member), which the running kernel's existing instances keep", name), suggestShadow)
	}
}
