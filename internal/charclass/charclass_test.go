package charclass

import (
	"regexp"
	"testing"
)

// FuzzAgainstRegexp: Word and All accept exactly what the regular
// expressions they replace accept.
func FuzzAgainstRegexp(f *testing.F) {
	for _, s := range []string{"", "a", "6.1.0-56-amd64", "-x", "a-", "x_y.z$", "é", "CVE-2024-1086", "A\x00", "zz~+:", "0"} {
		f.Add(s)
	}
	lead, rest := New("A-Za-z0-9"), New("A-Za-z0-9._+~-")
	sym, symRest := New("A-Za-z_.$"), New("A-Za-z0-9_.$")
	word := New("A-Za-z0-9_")
	reRelease := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*$`)
	reRelease8 := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]{0,7}$`)
	reSymbol := regexp.MustCompile(`^[A-Za-z_.$][A-Za-z0-9_.$]*$`)
	reWord := regexp.MustCompile(`^[A-Za-z0-9_]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Word(s, lead, rest, 0), reRelease.MatchString(s); got != want {
			t.Errorf("release %q: Word %v, regexp %v", s, got, want)
		}
		if got, want := Word(s, lead, rest, 8), reRelease8.MatchString(s); got != want {
			t.Errorf("release of at most 8 %q: Word %v, regexp %v", s, got, want)
		}
		if got, want := Word(s, sym, symRest, 0), reSymbol.MatchString(s); got != want {
			t.Errorf("symbol %q: Word %v, regexp %v", s, got, want)
		}
		if got, want := word.All(s), reWord.MatchString(s); got != want {
			t.Errorf("word %q: All %v, regexp %v", s, got, want)
		}
	})
}

func TestNew(t *testing.T) {
	c := New("a-c_-")
	for b := 0; b < 256; b++ {
		want := b == 'a' || b == 'b' || b == 'c' || b == '_' || b == '-'
		if c[b] != want {
			t.Errorf("New(%q)[%q] = %v, want %v", "a-c_-", rune(b), c[b], want)
		}
	}
}
