package elfdiff

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
)

// The differ's tests run on object pairs compiled from testdata/src: the
// pairs committed under testdata/obj (compiled once by Debian 12's gcc
// 12.2 with cflags), which every machine runs, and the same pairs compiled
// now by this machine's gcc, which runs where gcc is (and under CI=true
// must be). The seed corpus of the fuzz targets under testdata/fuzz is made
// from the committed objects. Remake both after changing a source or the
// flags:
//
//go:generate go test -run ^TestObjects$ -update-objects .

var updateObjects = flag.Bool("update-objects", false, "recompile testdata/obj from testdata/src with gcc, and remake the fuzz seeds under testdata/fuzz")

// debugPairs are compiled with -g as well (the DWARF checks).
var debugPairs = []string{"changed", "layout"}

// pairSpec is one committed pair: a source and its extra flags.
type pairSpec struct {
	name  string
	debug bool // compiled with -g
}

func (p pairSpec) String() string {
	if p.debug {
		return p.name + ".g"
	}
	return p.name
}

func (p pairSpec) extra() []string {
	if p.debug {
		return []string{"-g"}
	}
	return nil
}

// objFile is the committed object of one side of a pair.
func (p pairSpec) objFile(patched bool) string {
	side := "orig"
	if patched {
		side = "patched"
	}
	return filepath.Join("testdata", "obj", p.String()+"."+side+".o")
}

// allPairs lists every pair testdata/obj holds: each source, and
// debugPairs with -g.
func allPairs(t testing.TB) []pairSpec {
	t.Helper()
	srcs, err := filepath.Glob(filepath.Join("testdata", "src", "*.c"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no sources in testdata/src: %v", err)
	}
	var out []pairSpec
	for _, s := range srcs {
		out = append(out, pairSpec{name: strings.TrimSuffix(filepath.Base(s), ".c")})
	}
	for _, n := range debugPairs {
		out = append(out, pairSpec{name: n, debug: true})
	}
	return out
}

// compileObjects compiles testdata/src/<name>.c with -DORIGINAL and with
// -DPATCHED, plus extra flags. The build folder is mapped to "." in the
// DWARF so that the objects do not depend on where the clone is.
func compileObjects(t testing.TB, name string, extra []string) (orig, patched []byte) {
	t.Helper()
	testenv.NeedTools(t, "gcc")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out [2][]byte
	for i, def := range []string{"-DORIGINAL", "-DPATCHED"} {
		obj := filepath.Join(dir, name+[]string{".orig.o", ".patched.o"}[i])
		args := slices.Concat(cflags, extra, []string{"-fdebug-prefix-map=" + wd + "=.", def, filepath.Join("testdata", "src", name+".c"), "-o", obj})
		if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		if out[i], err = os.ReadFile(obj); err != nil {
			t.Fatal(err)
		}
	}
	return out[0], out[1]
}

// readPair parses both sides of a pair.
func readPair(t *testing.T, what string, orig, patched []byte) (*File, *File) {
	t.Helper()
	var files [2]*File
	for i, b := range [][]byte{orig, patched} {
		f, err := Read(b)
		if err != nil {
			t.Fatalf("Read(%s, side %d) = %v", what, i, err)
		}
		files[i] = f
	}
	return files[0], files[1]
}

// committedPair returns the committed objects of a pair.
func committedPair(t testing.TB, p pairSpec) (orig, patched []byte) {
	t.Helper()
	var out [2][]byte
	for i := range out {
		b, err := os.ReadFile(p.objFile(i == 1))
		if err != nil {
			t.Fatalf("committed pair %s: %v (go generate ./elfdiff remakes testdata/obj)", p, err)
		}
		out[i] = b
	}
	return out[0], out[1]
}

// forPair runs fn on the pair name (with -g when debug): in subtest
// "committed" on the objects under testdata/obj, and in subtest "gcc" on
// the objects compiled now (skipped without gcc, failed under CI=true).
func forPair(t *testing.T, name string, debug bool, fn func(t *testing.T, orig, patched *File)) {
	t.Helper()
	p := pairSpec{name: name, debug: debug}
	t.Run("committed", func(t *testing.T) {
		o, q := committedPair(t, p)
		orig, patched := readPair(t, p.String(), o, q)
		fn(t, orig, patched)
	})
	t.Run("gcc", func(t *testing.T) {
		o, q := compileObjects(t, name, p.extra())
		orig, patched := readPair(t, p.String(), o, q)
		fn(t, orig, patched)
	})
}

// TestObjects: testdata/obj holds both sides of every pair and nothing
// else, each a relocatable object Read accepts, and testdata/fuzz holds
// the seeds made from them. With -update-objects it remakes them all.
func TestObjects(t *testing.T) {
	pairs := allPairs(t)
	if *updateObjects {
		for _, p := range pairs {
			o, q := compileObjects(t, p.name, p.extra())
			os.MkdirAll(filepath.Join("testdata", "obj"), 0o755)
			for i, b := range [][]byte{o, q} {
				if err := os.WriteFile(p.objFile(i == 1), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		writeFuzzSeeds(t)
	}
	want := map[string]bool{}
	total := 0
	for _, p := range pairs {
		o, q := committedPair(t, p)
		readPair(t, p.String(), o, q)
		want[filepath.Base(p.objFile(false))] = true
		want[filepath.Base(p.objFile(true))] = true
		total += len(o) + len(q)
	}
	ents, err := os.ReadDir(filepath.Join("testdata", "obj"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("testdata/obj/%s is no pair's object: remove it, or add its source to testdata/src", e.Name())
		}
	}
	if total > 150_000 { // some 4 KB per pair
		t.Errorf("testdata/obj holds %d bytes of objects, want them small (under 150 KB)", total)
	}
	for target, seeds := range fuzzSeeds(t) {
		for _, s := range seeds {
			if _, err := os.Stat(seedFile(target, s)); err != nil {
				t.Errorf("fuzz seed %v missing: go generate ./elfdiff remakes it", err)
			}
		}
	}
}

// fuzzSeeds are the seed inputs of the ELF fuzz targets: committed objects
// whole, and copies damaged where the ELF reader must check: cut short,
// section headers past the end, a section's size past the end, a symbol
// table linked to a section that does not exist.
func fuzzSeeds(t testing.TB) map[string][][]byte {
	t.Helper()
	small, _ := committedPair(t, pairSpec{name: "notrace"})
	changed, patched := committedPair(t, pairSpec{name: "static_local"})
	damaged := damage(t, small)
	// A livepatch module as the builder writes it, before ConvertModule.
	var module []byte
	{
		o, err := Read(changed)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Read(patched)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Diff(o, p, opts(o))
		if err != nil {
			t.Fatalf("Diff(static_local) = %v", err)
		}
		if module, err = Write(res.Object); err != nil {
			t.Fatal(err)
		}
	}
	// Few, to keep them small: FuzzDiff and FuzzRead also start from the
	// whole objects seedObjects adds.
	return map[string][][]byte{
		"FuzzRead":          append([][]byte{small}, damaged...),
		"FuzzConvertModule": {module, damage(t, module)[3]},
		"FuzzParseKallsyms": {damaged[1]},
		"FuzzDiff":          {small},
	}
}

// damage returns copies of the ELF64 object b cut short, with e_shoff past
// the end, with its largest section's size past the end, and with every
// sh_link out of range.
func damage(t testing.TB, b []byte) [][]byte {
	t.Helper()
	le := binary.LittleEndian
	if len(b) < 64 {
		t.Fatalf("object of %d bytes", len(b))
	}
	shoff, shnum := le.Uint64(b[0x28:]), int(le.Uint16(b[0x3c:]))
	if shoff+uint64(shnum)*64 > uint64(len(b)) {
		t.Fatalf("section headers at %#x (%d) past the end of %d bytes", shoff, shnum, len(b))
	}
	short := bytes.Clone(b[:shoff+uint64(shnum)*64/2])
	pastEnd := bytes.Clone(b)
	le.PutUint64(pastEnd[0x28:], uint64(len(b))+0x1000)
	bigSection := bytes.Clone(b)
	largest := 1
	for i := 1; i < shnum; i++ {
		if le.Uint64(b[shoff+uint64(i)*64+0x20:]) > le.Uint64(b[shoff+uint64(largest)*64+0x20:]) {
			largest = i
		}
	}
	le.PutUint64(bigSection[shoff+uint64(largest)*64+0x20:], 1<<40)
	badLinks := bytes.Clone(b)
	for i := 1; i < shnum; i++ {
		if le.Uint32(b[shoff+uint64(i)*64+0x28:]) != 0 {
			le.PutUint32(badLinks[shoff+uint64(i)*64+0x28:], uint32(shnum)+7)
		}
	}
	return [][]byte{short, pastEnd, bigSection, badLinks}
}

// seedFile is where go test looks for a seed of target: testdata/fuzz/<target>/<name>.
func seedFile(target string, b []byte) string {
	return filepath.Join("testdata", "fuzz", target, fmt.Sprintf("%x", sha256.Sum256(b))[:16])
}

// writeFuzzSeeds writes fuzzSeeds in go test's corpus format, removing
// the seeds of an earlier generation (not the failing inputs go test
// saved: their names are longer).
func writeFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(dir, "????????????????"))
		for _, f := range old {
			os.Remove(f)
		}
		for _, s := range seeds {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
			if err := os.WriteFile(seedFile(target, s), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
