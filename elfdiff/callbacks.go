package elfdiff

import (
	"debug/elf"
	"fmt"
	"sort"
	"strings"
)

// Callback is a klp callback a fix registers with stent/livepatch.h's
// STENT_PRE_PATCH, STENT_POST_PATCH, STENT_PRE_UNPATCH or
// STENT_POST_UNPATCH: a pointer to a function the fix adds, in section
// .stent.<kind> of the patched object. The function is carried like a new
// function; the build sets it as the klp_callbacks entry of kind of the
// klp_object Object.
type Callback struct {
	Kind    string `json:"kind"`   // pre_patch, post_patch, pre_unpatch or post_unpatch
	Object  string `json:"object"` // "vmlinux" or a module name: the object whose callback it is
	Func    string `json:"func"`   // the function the fix registers
	File    string `json:"file"`
	NewName string `json:"-"` // global symbol of its code in Result.Object
}

// CallbackKinds are the klp_callbacks members (include/linux/livepatch.h),
// in the kernel's order.
var CallbackKinds = []string{"pre_patch", "post_patch", "pre_unpatch", "post_unpatch"}

// callbackSection is the prefix of the sections stent/livepatch.h's
// callback macros write their pointers to.
const callbackSection = ".stent."

// callbacks reads the callbacks the patched object registers, refusing
// those that cannot be: not a function the fix adds, __init, or a second
// one of a kind.
func (d *differ) callbacks() []callbackFn {
	var out []callbackFn
	byKind := map[string][]string{}
	for _, sec := range d.p.f.Sections[1:] {
		kind, ok := strings.CutPrefix(sec.Name, callbackSection)
		if !ok || sec.Type == elf.SHT_RELA {
			continue
		}
		if !validKind(kind) {
			d.refuse(RuleCallback, sec.Name, fmt.Sprintf("section %s is not one of stent/livepatch.h's callback kinds (%s)", sec.Name, strings.Join(CallbackKinds, ", ")), suggestCallback)
			continue
		}
		relocs := append([]Reloc(nil), sec.Relocs...)
		sort.Slice(relocs, func(i, j int) bool { return relocs[i].Offset < relocs[j].Offset })
		for _, r := range relocs {
			fn, off := d.p.target(sec, r)
			switch {
			case fn == nil || fn.Type != elf.STT_FUNC || fn.Section == nil || off != 0:
				d.refuse(RuleCallback, sec.Name, fmt.Sprintf("a %s callback entry does not point at a function of %s", kind, d.opts.File), suggestCallback)
				continue
			case isInit(fn.Section) || isExit(fn.Section):
				d.refuse(RuleCallback, fn.Name, fmt.Sprintf("%s callback %s is __init or __exit code, which is gone when the callback runs", kind, fn.Name), suggestCallback)
				continue
			case d.twin[fn] != nil:
				d.refuse(RuleCallback, fn.Name, fmt.Sprintf("%s callback %s is a function the running kernel already has", kind, fn.Name), suggestCallback)
				continue
			}
			byKind[kind] = append(byKind[kind], fn.Name)
			out = append(out, callbackFn{kind: kind, fn: fn})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return kindIndex(out[i].kind) < kindIndex(out[j].kind) })
	for _, kind := range CallbackKinds {
		if fns := byKind[kind]; len(fns) > 1 {
			sort.Strings(fns)
			d.refuse(RuleCallback, fns[0], fmt.Sprintf("%s registers %d %s callbacks (%s) for %s, which has one", d.opts.File, len(fns), kind, strings.Join(fns, ", "), d.opts.Object), suggestOneCallback)
		}
	}
	return out
}

type callbackFn struct {
	kind string
	fn   *Symbol
}

func validKind(kind string) bool { return kindIndex(kind) >= 0 }

func kindIndex(kind string) int {
	for i, k := range CallbackKinds {
		if k == kind {
			return i
		}
	}
	return -1
}

const (
	suggestCallback    = "register a function the fix adds, with stent/livepatch.h's STENT_PRE_PATCH(fn), STENT_POST_PATCH(fn), STENT_PRE_UNPATCH(fn) or STENT_POST_UNPATCH(fn) (docs/builder.md, \"Callbacks and shadow variables\")"
	suggestOneCallback = "the kernel runs one callback of each kind per patched object: call the others from one function and register that one"
)
