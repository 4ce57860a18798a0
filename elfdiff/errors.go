package elfdiff

import (
	"errors"
	"fmt"
	"strings"
)

// ErrRefused is wrapped by a *RefusedError: the fix changes something a
// live patch cannot change safely.
var ErrRefused = errors.New("fix cannot be live patched safely")

// Rule names the safety rule behind a Refusal.
type Rule string

const (
	RuleDataChanged   Rule = "data-changed"   // layout or initial value of existing data
	RuleInitChanged   Rule = "init-changed"   // __init code or data
	RuleNoFtrace      Rule = "no-ftrace"      // function without an __fentry__ call
	RuleComdat        Rule = "comdat-changed" // COMDAT group members changed
	RuleSpecial       Rule = "special-section"
	RuleModuleKey     Rule = "module-static-key"
	RuleUnresolvable  Rule = "unresolvable-symbol"
	RuleWritableAnon  Rule = "anonymous-data"
	RuleExportChanged Rule = "export-changed"
	RuleCallback      Rule = "callback" // a klp callback stent/livepatch.h cannot register
)

// Refusal is one reason a fix cannot become a live patch.
type Refusal struct {
	Rule    Rule   `json:"rule"`
	File    string `json:"file,omitempty"`
	Symbol  string `json:"symbol"`
	Reason  string `json:"reason"`
	Suggest string `json:"suggest"`
}

func (r Refusal) String() string {
	s := r.Symbol
	if r.File != "" {
		s = r.File + ": " + s
	}
	return fmt.Sprintf("%s: %s; %s", s, r.Reason, r.Suggest)
}

// RefusedError lists every refusal of a diff.
type RefusedError struct {
	Refusals []Refusal
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fix cannot be live patched safely (%d problem", len(e.Refusals))
	if len(e.Refusals) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, r := range e.Refusals {
		b.WriteString("\n  - ")
		b.WriteString(r.String())
	}
	return b.String()
}

func (e *RefusedError) Unwrap() error { return ErrRefused }

// Suggestions shown with refusals.
const (
	suggestShadow   = "keep the old layout and value and store new state in a shadow variable (STENT_SHADOW in stent/livepatch.h, over klp_shadow_*), or change the data from a post-patch callback (STENT_POST_PATCH), or reboot into a fixed kernel"
	suggestInit     = "__init code has already run and been freed: apply the fix to the runtime paths only, or reboot into a fixed kernel"
	suggestNoFtrace = "the function cannot be redirected by ftrace: patch its callers instead (move the fix into a traceable caller), or reboot into a fixed kernel"
	suggestReboot   = "reboot into a fixed kernel"
)

// syscallBody returns the syscall whose SYSCALL_DEFINEn body fn is
// (__do_sys_NAME; __do_compat_sys_NAME for COMPAT_SYSCALL_DEFINEn).
func syscallBody(fn string) (string, bool) {
	for _, p := range []string{"__do_sys_", "__do_compat_sys_"} {
		if name, ok := strings.CutPrefix(fn, p); ok && name != "" {
			name, _, _ = strings.Cut(name, ".") // .isra.0, .constprop.0
			return name, true
		}
	}
	return "", false
}

// suggestSyscall says how to write a syscall fix that can be live patched.
func suggestSyscall(name string) string {
	return fmt.Sprintf("write the syscall in the fix with Stent's macro: STENT_SYSCALL_DEFINEn(%[1]s, ...) in place of SYSCALL_DEFINEn(%[1]s, ...) (COMPAT_: STENT_COMPAT_SYSCALL_DEFINEn), and #include <stent/livepatch.h>; its entry points (__x64_sys_%[1]s, ...) are then replaced and call the new body (docs/builder.md, \"Syscalls\")", name)
}
