package kinfo

import (
	"regexp"
	"testing"
)

// FuzzPackageVersion: the hand-written scanners find what the regular
// expressions `\bDebian (\d\S*)` and `\.(x86_64|aarch64|ppc64le|s390x)$`
// find.
func FuzzPackageVersion(f *testing.F) {
	for _, s := range []string{
		"#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)",
		"xDebian 6.1", "Debian 6.1", "Debian x Debian 7", "_Debian 1 Debian 2", "Debian 1\tz", "Debian ",
		"5.14.0-362.8.1.el9_3.x86_64", "6.1.0-56-amd64", ".s390x", "a.ppc64lex",
	} {
		f.Add(s)
	}
	reDeb := regexp.MustCompile(`\bDebian (\d\S*)`)
	reArch := regexp.MustCompile(`\.(x86_64|aarch64|ppc64le|s390x)$`)
	f.Fuzz(func(t *testing.T, s string) {
		want := ""
		if m := reDeb.FindStringSubmatch(s); m != nil {
			want = m[1]
		}
		if got := debianVersionIn(s); got != want {
			t.Errorf("debianVersionIn(%q) = %q, regexp finds %q", s, got, want)
		}
		want = ""
		if m := reArch.FindStringSubmatch(s); m != nil {
			want = m[1]
		}
		if got := rpmArch(s); got != want {
			t.Errorf("rpmArch(%q) = %q, regexp finds %q", s, got, want)
		}
	})
}
