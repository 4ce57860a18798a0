package elfdiff

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/stent-dev/stent/internal/safeelf"
)

// objectDWARF returns the relocatable object raw and its DWARF, or a nil
// *dwarf.Data when it has none or debug/elf cannot read it; the error is
// set only when reading panicked. Walk the DWARF inside the File's Do:
// debug/dwarf may panic on malformed input too.
func objectDWARF(raw []byte) (*safeelf.File, *dwarf.Data, error) {
	ef, err := safeelf.NewBytes("object", raw)
	if err == nil {
		var dw *dwarf.Data
		if dw, err = ef.DWARF(); err == nil {
			return ef, dw, nil
		}
	}
	if _, ok := errors.AsType[*safeelf.PanicError](err); ok {
		return nil, nil, err
	}
	return nil, nil, nil
}

// structLayouts reads the named struct and union types of an object's DWARF
// and describes each one's layout: size, and every member's name, offset,
// bit position and size. A name defined more than once (in different
// scopes) keeps all its layouts, sorted. Without DWARF the map is empty;
// when reading it panicked, the error says so.
func structLayouts(raw []byte) (map[string]string, error) {
	m := map[string]string{}
	ef, dw, err := objectDWARF(raw)
	if dw == nil {
		return m, err
	}
	if err := ef.Do(func() error { layouts(dw, m); return nil }); err != nil {
		return map[string]string{}, err
	}
	return m, nil
}

// layouts adds the layout of every struct and union type of dw to m.
func layouts(dw *dwarf.Data, m map[string]string) {
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
}

// checkLayouts refuses a fix that changes the layout of a struct or union
// both objects define (a header or the file itself): the running kernel's
// instances keep the old layout, which the patched code would misread.
// Without DWARF on both sides nothing is checked.
func (d *differ) checkLayouts() {
	lo, errO := structLayouts(d.o.f.raw)
	lp, errP := structLayouts(d.p.f.raw)
	for _, err := range []error{errO, errP} {
		if err != nil {
			d.warnings = append(d.warnings, fmt.Sprintf("%s: struct layouts not checked: cannot read DWARF: %v", d.opts.File, err))
		}
	}
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
