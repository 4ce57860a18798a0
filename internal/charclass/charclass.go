// Package charclass checks strings against ASCII character classes: the
// name and version syntaxes of manifests, keys and kernels, which the host
// binary checks on every apply. Regular expressions would do the same, at
// the price of compiling them when the program starts, which a short-lived
// command pays every time.
package charclass

// Class is a set of ASCII bytes.
type Class [256]bool

// New returns the class of spec, a list of single bytes and ranges such as
// "A-Za-z0-9._-" (a '-' first or last is itself).
func New(spec string) *Class {
	var c Class
	for i := 0; i < len(spec); i++ {
		if i+2 < len(spec) && spec[i+1] == '-' {
			for b := int(spec[i]); b <= int(spec[i+2]); b++ {
				c[b] = true
			}
			i += 2
			continue
		}
		c[spec[i]] = true
	}
	return &c
}

// All reports whether every byte of s is in c (true for "").
func (c *Class) All(s string) bool {
	for i := 0; i < len(s); i++ {
		if !c[s[i]] {
			return false
		}
	}
	return true
}

// Word reports whether s is one byte of first followed by bytes of rest,
// with len(s) between 1 and max (no limit when max <= 0).
func Word(s string, first, rest *Class, max int) bool {
	return s != "" && (max <= 0 || len(s) <= max) && first[s[0]] && rest.All(s[1:])
}
