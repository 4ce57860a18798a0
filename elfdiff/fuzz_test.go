package elfdiff

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// seedObjects adds the test objects compiled from testdata/src, when gcc is
// there, and the committed corpus otherwise.
func seedObjects(f *testing.F) [][]byte {
	var seeds [][]byte
	if _, err := exec.LookPath("gcc"); err == nil {
		dir := f.TempDir()
		for _, name := range []string{"changed", "jump_label", "comdat"} {
			out := filepath.Join(dir, name+".o")
			args := append(append([]string{}, cflags...), filepath.Join("testdata", "src", name+".c"), "-o", out)
			if exec.Command("gcc", args...).Run() == nil {
				if b, err := os.ReadFile(out); err == nil {
					seeds = append(seeds, b)
				}
			}
		}
	}
	for _, s := range seeds {
		f.Add(s)
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
	if len(seeds) == 0 {
		f.Skip("gcc not installed")
	}
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
