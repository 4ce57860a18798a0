package elfdiff

import (
	"testing"
)

// seedObjects adds the committed objects of a few pairs (original side)
// and returns them; the seeds under testdata/fuzz (see TestObjects) add
// damaged copies.
func seedObjects(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, name := range []string{"changed", "jump_label", "comdat"} {
		o, _ := committedPair(f, pairSpec{name: name})
		seeds = append(seeds, o)
		f.Add(o)
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	return seeds
}

// FuzzRead: Read never panics, and what it accepts Write can write and Read
// read again.
func FuzzRead(f *testing.F) {
	seedObjects(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, err := Read(data)
		if err != nil {
			return
		}
		out, err := Write(obj)
		if err != nil {
			return // e.g. a symbol in a section Write does not keep
		}
		if _, err := Read(out); err != nil {
			t.Fatalf("Read(Write(Read(data))) = %v", err)
		}
	})
}

// FuzzConvertModule: never panics on any input.
func FuzzConvertModule(f *testing.F) {
	seedObjects(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = ConvertModule(data, nil)
	})
}

// FuzzParseKallsyms: never panics on any input.
func FuzzParseKallsyms(f *testing.F) {
	seedObjects(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseKallsyms(data)
	})
}

// FuzzDiff: diffing an object against a mutated copy of itself never
// panics (Diff recovers, but a recovered panic is still a bug).
func FuzzDiff(f *testing.F) {
	seeds := seedObjects(f)
	base, err := Read(seeds[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Read(data)
		if err != nil {
			return
		}
		_, err = Diff(base, p, opts(base))
		if err != nil && len(err.Error()) > 0 && containsStr(err.Error(), "internal error") {
			t.Fatalf("Diff panicked: %v", err)
		}
	})
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
