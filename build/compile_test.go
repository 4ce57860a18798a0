package build

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/testenv"
)

// fakeKbuild stands in for the kernel's top Makefile: it compiles one
// object from its .c and writes a kbuild-like .<obj>.cmd beside it.
const fakeKbuild = `%.o: %.c
	$(CC) -O2 $(KCFLAGS) -c -o $@ $<
	@echo 'cmd_$@ := $(CC) -O2 $(KCFLAGS) -c -o $@ $<' > $(@D)/.$(@F).cmd
`

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// funcBytes returns the code of function name in object file path.
func funcBytes(t *testing.T, path, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elfdiff.Read(b)
	if err != nil {
		t.Fatalf("Read(%s) = %v", path, err)
	}
	for _, s := range f.Symbols[1:] {
		if s.Name == name && s.Section != nil {
			return s.Section.Data[s.Value : s.Value+s.Size]
		}
	}
	t.Fatalf("%s: no function %s", path, name)
	return nil
}

const sourceV1 = `int fixed(int x)
{
	return x + 1;
}

/* lines that keep the fix's context away from other() */



int other(int x)
{
	return x * 10;
}
`

// Two lines of context on each side, as diff -u would give with -U2: with
// fewer after the change than before it, patch(1) would take the hunk for
// the end of the file and apply it with fuzz.
const fixPatch = "--- a/foo.c\n+++ b/foo.c\n@@ -1,5 +1,5 @@\n int fixed(int x)\n {\n-\treturn x + 1;\n+\treturn x + 2;\n }\n \n"

// A --source tree is the user's: when it changes between two builds (an
// edit, a git checkout), the second build's original object must be
// compiled from the tree as it is now, or every function changed in
// between would look changed by the fix and be carried into the patch.
func TestCompileSourceTreeOriginalsFollowTheTree(t *testing.T) {
	testenv.NeedTools(t, "make", "gcc", "patch")
	dir, cache := t.TempDir(), t.TempDir()
	writeFiles(t, dir, map[string]string{"Makefile": fakeKbuild, "foo.c": sourceV1})
	fix := filepath.Join(t.TempDir(), "fix.patch")
	writeFiles(t, filepath.Dir(fix), map[string]string{"fix.patch": fixPatch})
	changes, err := ParsePatch([]byte(fixPatch))
	if err != nil {
		t.Fatal(err)
	}
	tr := &Tree{Dir: dir, CC: "gcc", Release: "test", state: filepath.Join(dir, ".stent")}
	ctx := context.Background()
	build := func() ObjectPair {
		t.Helper()
		pairs, _, err := tr.Compile(ctx, cache, Fix{Patches: []string{fix}, Changes: changes}, []string{"foo.o"}, t.TempDir(), io.Discard)
		if err != nil {
			t.Fatalf("Compile = %v", err)
		}
		return pairs[0]
	}
	p := build()
	if bytes.Equal(funcBytes(t, p.Orig, "fixed"), funcBytes(t, p.Patched, "fixed")) {
		t.Fatal("first build: fixed() unchanged by the fix")
	}
	// The user edits the tree between builds.
	writeFiles(t, dir, map[string]string{"foo.c": strings.Replace(sourceV1, "x * 10", "x * 20", 1)})
	p = build()
	if o, n := funcBytes(t, p.Orig, "other"), funcBytes(t, p.Patched, "other"); !bytes.Equal(o, n) {
		t.Errorf("second build: other() differs between the original and the patched object (original compiled from the tree as it was before the edit)\norig    % x\npatched % x", o, n)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "foo.c")); !bytes.Contains(got, []byte("x * 20")) || !bytes.Contains(got, []byte("x + 1")) {
		t.Errorf("foo.c after the build = %q, want the user's edited, unpatched file", got)
	}
}

// Cancelling a build (Ctrl-C, SIGTERM) while make runs in the tree must stop
// make's children too: a compiler or sub-make left running would go on
// writing into the tree after the build has restored it and released its
// lock.
func TestMakeCancelStopsChildren(t *testing.T) {
	testenv.NeedTools(t, "make", "sh", "sleep")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Makefile": "slow:\n\tsh -c 'sleep 1; touch late' & sleep 10\n"})
	tr := &Tree{Dir: dir, CC: "gcc"}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := tr.make(ctx, "slow"); err == nil {
		t.Fatal("make(cancelled) = nil error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("make returned %v after the cancellation", d)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "late")); err == nil {
		t.Error("a child of make went on running after the build was cancelled (it wrote 'late')")
	}
}

// What make generates from a header during a patched compile (the kernel's
// asm-offsets.h and bounds.h) must not outlive the build: the next build's
// originals are compiled from the pristine header.
func TestCompileGeneratedFromPatchedHeaderDoesNotOutliveTheBuild(t *testing.T) {
	testenv.NeedTools(t, "make", "gcc", "patch", "cp")
	pristine, cache := t.TempDir(), t.TempDir()
	makefile := `gen.h: hdr.h
	cp hdr.h gen.h
%.o: %.c gen.h
	$(CC) -O2 $(KCFLAGS) -c -o $@ $<
	@echo 'cmd_$@ := $(CC) -O2 $(KCFLAGS) -c -o $@ $<' > $(@D)/.$(@F).cmd
`
	writeFiles(t, pristine, map[string]string{
		"Makefile": makefile,
		"hdr.h":    "#define VALUE 1\n",
		"foo.c":    "#include \"gen.h\"\nint foo(void)\n{\n\treturn VALUE;\n}\n",
		"bar.c":    "#include \"gen.h\"\nint bar(void)\n{\n\treturn VALUE;\n}\n",
	})
	// Tar extraction gives the pristine files old mtimes.
	old := time.Now().Add(-time.Hour)
	for _, f := range []string{"Makefile", "hdr.h", "foo.c", "bar.c"} {
		os.Chtimes(filepath.Join(pristine, f), old, old)
	}
	dir := filepath.Join(t.TempDir(), "tree")
	if out, err := exec.Command("cp", "-al", pristine, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp -al: %v: %s", err, out)
	}
	tr := &Tree{Dir: dir, Pristine: pristine, CC: "gcc", Release: "test", state: filepath.Join(t.TempDir(), "state")}
	compile := func(patch string, objs ...string) ObjectPair {
		t.Helper()
		p := filepath.Join(t.TempDir(), "fix.patch")
		writeFiles(t, filepath.Dir(p), map[string]string{"fix.patch": patch})
		changes, err := ParsePatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		pairs, _, err := tr.Compile(context.Background(), cache, Fix{Patches: []string{p}, Changes: changes}, objs, t.TempDir(), io.Discard)
		if err != nil {
			t.Fatalf("Compile = %v", err)
		}
		return pairs[0]
	}
	// A header fix, compiled through --object foo.o.
	compile("--- a/hdr.h\n+++ b/hdr.h\n@@ -1 +1 @@\n-#define VALUE 1\n+#define VALUE 2\n", "foo.o")
	// The next build, of another file, starts from the pristine header.
	p := compile("--- a/bar.c\n+++ b/bar.c\n@@ -2,4 +2,4 @@\n int bar(void)\n {\n-\treturn VALUE;\n+\treturn VALUE + 10;\n }\n", "bar.o")
	if got := funcBytes(t, p.Orig, "bar"); !bytes.Equal(got, []byte{0xb8, 1, 0, 0, 0, 0xc3}) {
		t.Errorf("original bar() = % x, want mov $1,%%eax; ret (compiled with the pristine header's VALUE 1)", got)
	}
	if got, _ := os.ReadFile(filepath.Join(pristine, "hdr.h")); string(got) != "#define VALUE 1\n" {
		t.Errorf("pristine hdr.h = %q, written through a hard link", got)
	}
}

// Two builds on one --source tree exclude each other even when they use
// different caches.
func TestSourceTreeLockIgnoresCache(t *testing.T) {
	dir := t.TempDir()
	a := &Tree{Dir: dir, state: filepath.Join(dir, ".stent")}
	b := &Tree{Dir: dir, state: filepath.Join(dir, ".stent")}
	unlock, err := a.lock(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if u, err := b.lock(ctx, t.TempDir()); err == nil {
		u()
		t.Error("a second build with another cache locked the same --source tree")
	}
}

// Files a fix needs while it compiles (Stent's header) are in the tree
// for the patched objects only, and gone afterwards, with the folders made
// for them: the unpatched source never sees them and a --source tree is
// left as it was.
func TestCompileAddsFilesForThePatchedObjects(t *testing.T) {
	testenv.NeedTools(t, "make", "gcc", "patch")
	dir, cache := t.TempDir(), t.TempDir()
	makefile := strings.ReplaceAll(fakeKbuild, "-O2 $(KCFLAGS)", "-O2 -Iinclude $(KCFLAGS)")
	writeFiles(t, dir, map[string]string{"Makefile": makefile, "foo.c": sourceV1})
	patch := "--- a/foo.c\n+++ b/foo.c\n@@ -1,5 +1,7 @@\n+#include <stent/livepatch.h>\n+\n int fixed(int x)\n {\n-\treturn x + 1;\n+\treturn x + STENT_TEST;\n }\n \n"
	fix := filepath.Join(t.TempDir(), "fix.patch")
	writeFiles(t, filepath.Dir(fix), map[string]string{"fix.patch": patch})
	changes, err := ParsePatch([]byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	if !usesHeader([]byte(patch)) || usesHeader([]byte(fixPatch)) {
		t.Errorf("usesHeader = %v for a fix with the include, %v for one without; want true, false", usesHeader([]byte(patch)), usesHeader([]byte(fixPatch)))
	}
	tr := &Tree{Dir: dir, CC: "gcc", Release: "test", state: filepath.Join(dir, ".stent")}
	files := map[string][]byte{HeaderPath: []byte("#define STENT_TEST 42\n")}
	pairs, _, err := tr.Compile(context.Background(), cache, Fix{Patches: []string{fix}, Changes: changes, Files: files}, []string{"foo.o"}, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatalf("Compile(fix including stent/livepatch.h) = %v", err)
	}
	if o, p := funcBytes(t, pairs[0].Orig, "fixed"), funcBytes(t, pairs[0].Patched, "fixed"); bytes.Equal(o, p) || !bytes.Contains(p, []byte{42}) {
		t.Errorf("patched fixed() = % x, want it to add 42 (from the added header)", p)
	}
	if _, err := os.Stat(filepath.Join(dir, "include")); !os.IsNotExist(err) {
		t.Errorf("after Compile, the tree's include folder: %v, want it gone", err)
	}
	// Without the file the fix does not compile: the header came from Files.
	_, _, err = tr.Compile(context.Background(), cache, Fix{Patches: []string{fix}, Changes: changes}, []string{"foo.o"}, t.TempDir(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "stent/livepatch.h") {
		t.Errorf("Compile(without Files) = %v, want a compile error about stent/livepatch.h", err)
	}
}
