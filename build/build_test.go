package build

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/testenv"
)

func TestParsePatch(t *testing.T) {
	tests := []struct {
		name, in string
		want     []FileChange
		wantErr  bool
	}{
		{name: "unified", in: "--- a/fs/proc/cmdline.c\t2024-01-01\n+++ b/fs/proc/cmdline.c\t2024-01-02\n@@ -1 +1 @@\n-x\n+y\n",
			want: []FileChange{{Path: "fs/proc/cmdline.c"}}},
		{name: "git", in: "diff --git a/kernel/fork.c b/kernel/fork.c\nindex 1..2 100644\n--- a/kernel/fork.c\n+++ b/kernel/fork.c\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/include/linux/sched.h b/include/linux/sched.h\n--- a/include/linux/sched.h\n+++ b/include/linux/sched.h\n@@ -1 +1 @@\n-a\n+b\n",
			want: []FileChange{{Path: "kernel/fork.c"}, {Path: "include/linux/sched.h"}}},
		{name: "new and deleted", in: "--- /dev/null\n+++ b/fs/new.c\n@@ -0,0 +1 @@\n+x\n--- a/fs/old.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
			want: []FileChange{{Path: "fs/new.c", New: true}, {Path: "fs/old.c", Deleted: true}}},
		{name: "empty", in: "just text\n", wantErr: true},
		// patch(1) would move fs/old.c, which no restore undoes.
		{name: "git rename", in: "diff --git a/fs/old.c b/fs/new.c\nsimilarity index 100%\nrename from fs/old.c\nrename to fs/new.c\n--- a/fs/x.c\n+++ b/fs/x.c\n@@ -1 +1 @@\n-a\n+b\n", wantErr: true},
		{name: "escape", in: "--- a/../etc/passwd\n+++ b/../etc/passwd\n", wantErr: true},
		// Content lines that look like file headers: a removed "-- x" and
		// an added "++ y" (SQL comments, a C "--i" at the line start) are
		// counted as the hunk's lines, not taken for a new file.
		{name: "header-like lines in a hunk", in: "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n ctx\n--- b/../../etc/passwd\n+++ b/fs/other.c\n ctx\n@@ -10,2 +10,2 @@\n--- old\n+++ new\n ctx\n",
			want: []FileChange{{Path: "fs/a.c"}}},
		{name: "no newline at end of file", in: "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n--- a/fs/b.c\n+++ b/fs/b.c\n@@ -1 +1 @@\n-a\n+b\n",
			want: []FileChange{{Path: "fs/a.c"}, {Path: "fs/b.c"}}},
		{name: "empty context line", in: "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n-a\n+b\n\n c\n",
			want: []FileChange{{Path: "fs/a.c"}}},
		{name: "hunk shorter than its header", in: "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n-a\n+b\n--- a/fs/b.c\n+++ b/fs/b.c\n@@ -1 +1 @@\n-a\n+b\n", wantErr: true},
		{name: "hunk cut short", in: "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n-a\n+b\n", wantErr: true},
		{name: "hunk longer than its header", in: "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1 +1,2 @@\n-a\n+b\n-c\n+d\n", wantErr: true},
		{name: "hunk before a header", in: "@@ -1 +1 @@\n-a\n+b\n", wantErr: true},
		{name: "bad hunk header", in: "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -x +1 @@\n-a\n+b\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParsePatch([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("ParsePatch(%s) error = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParsePatch(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
}

// The fixes the end-to-end tests build parse, with their hunks counted.
func TestParsePatchTestdata(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "patches", "*.patch"))
	if len(files) == 0 {
		t.Fatal("no testdata/patches/*.patch")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// One file per "--- a/" header (newfunc.patch has two).
		want := bytes.Count(append([]byte("\n"), b...), []byte("\n--- a/"))
		if got, err := ParsePatch(b); err != nil || len(got) != want {
			t.Errorf("ParsePatch(%s) = %v, %v, want %d files", f, got, err, want)
		}
	}
}

func TestObjectsFor(t *testing.T) {
	objs, warns, err := objectsFor([]FileChange{{Path: "fs/proc/cmdline.c"}, {Path: "Documentation/x.rst"}, {Path: "fs/proc/base.c"}}, nil)
	if err != nil || !cmp.Equal(objs, []string{"fs/proc/base.o", "fs/proc/cmdline.o"}) || len(warns) != 1 {
		t.Errorf("objectsFor = %v, %v, %v", objs, warns, err)
	}
	if _, _, err := objectsFor([]FileChange{{Path: "include/linux/fs.h"}}, nil); err == nil || !strings.Contains(err.Error(), "--object") {
		t.Errorf("objectsFor(header) error = %v, want one suggesting --object", err)
	}
	objs, _, err = objectsFor([]FileChange{{Path: "include/linux/fs.h"}}, []string{"fs/namei.o"})
	if err != nil || !cmp.Equal(objs, []string{"fs/namei.o"}) {
		t.Errorf("objectsFor(header, --object fs/namei.o) = %v, %v", objs, err)
	}
	if _, _, err := objectsFor([]FileChange{{Path: "fs/Makefile"}}, nil); err == nil {
		t.Error("objectsFor(Makefile) = nil error, want a refusal")
	}
	if _, _, err := objectsFor([]FileChange{{Path: "fs/old.c", Deleted: true}}, nil); err == nil {
		t.Error("objectsFor(deleted .c) = nil error")
	}
}

func TestParseSymvers(t *testing.T) {
	in := "0x1\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n0x2\tjbd2_journal_start\tfs/jbd2/jbd2\tEXPORT_SYMBOL\t\n0x3\tsnd_foo\tsound/core/snd-pcm\tEXPORT_SYMBOL_GPL\tSND\n"
	s, err := parseSymvers(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Symvers{"seq_puts": "vmlinux", "jbd2_journal_start": "jbd2", "snd_foo": "snd_pcm"}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("parseSymvers (-want +got):\n%s", diff)
	}
	if _, err := parseSymvers(strings.NewReader("garbage\n")); err == nil {
		t.Error("parseSymvers(garbage) = nil error")
	}
}

func TestDefaultName(t *testing.T) {
	for in, want := range map[string]string{
		"CVE-2024-1086.patch":   "stent_cve_2024_1086",
		"/x/y/fix proc.diff":    "stent_fix_proc",
		"---.patch":             "stent_patch",
		strings.Repeat("a", 80): "stent_" + strings.Repeat("a", 49),
	} {
		if got := DefaultName(in); got != want {
			t.Errorf("DefaultName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCompilerMessages(t *testing.T) {
	out := "  CC      fs/proc/cmdline.o\nfs/proc/cmdline.c: In function 'x':\nfs/proc/cmdline.c:10:21: error: 'y' undeclared\n   10 |  seq_putc(m, y);\n      |              ^\nmake[3]: *** [scripts/Makefile.build:255: fs/proc/cmdline.o] Error 1\n"
	got := compilerMessages(out)
	for _, want := range []string{"error: 'y' undeclared", "seq_putc(m, y)", "Error 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("compilerMessages = %q, want it to keep %q", got, want)
		}
	}
	if got := compilerMessages("a\nb\n"); got != "a\nb" {
		t.Errorf("compilerMessages(no errors) = %q, want the last lines", got)
	}
}

func TestBzPayload(t *testing.T) {
	img := make([]byte, 8192)
	copy(img[0x202:], "HdrS")
	img[0x1f1] = 3 // setup sectors: payload base (3+1)*512
	binary.LittleEndian.PutUint32(img[0x248:], 100)
	binary.LittleEndian.PutUint32(img[0x24c:], 6)
	copy(img[4*512+100:], "\xfd7zXZ\x00")
	p, err := bzPayload(img)
	if err != nil || string(p) != "\xfd7zXZ\x00" {
		t.Errorf("bzPayload = %q, %v", p, err)
	}
	binary.LittleEndian.PutUint32(img[0x24c:], 1<<30)
	if _, err := bzPayload(img); err == nil {
		t.Error("bzPayload(payload past the end) = nil error")
	}
	if _, err := bzPayload([]byte("not a kernel")); err == nil {
		t.Error("bzPayload(junk) = nil error")
	}
}

func TestBuildID(t *testing.T) {
	testenv.NeedTools(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "m.c")
	os.WriteFile(src, []byte("int main(void){return 0;}\n"), 0o644)
	exe := filepath.Join(dir, "m")
	if out, err := exec.Command("gcc", "-Wl,--build-id=sha1", "-o", exe, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(exe)
	id, err := BuildID(b)
	if err != nil || len(id) != 40 {
		t.Fatalf("BuildID = %q, %v, want 40 hex digits", id, err)
	}
	if out, err := exec.Command("readelf", "-n", exe).Output(); err == nil && !bytes.Contains(out, []byte(id)) {
		t.Errorf("BuildID = %s, not in readelf -n:\n%s", id, out)
	}
}

func TestCheckCumulative(t *testing.T) {
	old := &bundle.Manifest{Name: "stent_a", Level: 3, Kernel: bundle.Kernel{Release: "6.1.0-56-amd64"}, CVEs: []string{"CVE-2024-1"},
		Functions: []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}}}
	keep := []elfdiff.Func{{Object: "vmlinux", Name: "cmdline_proc_show"}, {Object: "vmlinux", Name: "c_start", Sympos: 2}}
	if err := checkCumulative(old, "6.1.0-56-amd64", keep); err != nil {
		t.Errorf("checkCumulative(superset) = %v", err)
	}
	if err := checkCumulative(old, "6.1.0-56-amd64", keep[1:]); err == nil || !strings.Contains(err.Error(), "vmlinux:cmdline_proc_show") {
		t.Errorf("checkCumulative(dropping a function) = %v, want an error naming it", err)
	}
	if err := checkCumulative(old, "6.1.0-55-amd64", keep); err == nil {
		t.Error("checkCumulative(other kernel) = nil")
	}
	if got := cveUnion([]string{"cve-2024-2", "CVE-2024-1"}, old); !cmp.Equal(got, []string{"CVE-2024-2", "CVE-2024-1"}) {
		t.Errorf("cveUnion = %v", got)
	}
}

func TestKLPSource(t *testing.T) {
	funcs := []elfdiff.Func{
		{Name: "bm_status_read", Object: "binfmt_misc", NewName: "__stent_1_new_0"},
		{Name: "c_start", Object: "vmlinux", Sympos: 2, NewName: "__stent_0_new_0"},
	}
	// Only the C generation is checked here; LinkModule's make run needs
	// kernel headers (the QEMU tests cover it).
	render := func(funcs []elfdiff.Func, owners map[string]string, cbs ...elfdiff.Callback) string {
		t.Helper()
		var b bytes.Buffer
		if err := klpSource.Execute(&b, struct {
			Name, Description string
			Replace           bool
			Objects           []*klpObject
		}{"stent_x", `a "quoted" fix`, true, klpObjects(funcs, owners, cbs)}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	src := render(funcs, map[string]string{".text.stent_0": "vmlinux", ".text.stent_1": "binfmt_misc"})
	for _, want := range []string{
		`{ .old_name = "c_start", .new_func = __stent_0_new_0, .old_sympos = 2 }`,
		`{ .name = NULL, .funcs = funcs_0 }`,
		`{ .name = "binfmt_misc", .funcs = funcs_1 }`,
		`.replace = true`,
		`MODULE_INFO(livepatch, "Y");`,
		`MODULE_DESCRIPTION("a \"quoted\" fix");`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("livepatch.c lacks %q:\n%s", want, src)
		}
	}

	// A function the fix adds to vmlinux that only a patched module
	// calls: no vmlinux function is replaced, but its code is carried and
	// its livepatch relocations (.klp.rela.vmlinux.*) are written only for
	// an object the patch names, so vmlinux gets one with no functions.
	src = render(funcs[:1], map[string]string{".text.stent_0": "vmlinux", ".text.stent_1": "binfmt_misc"})
	for _, want := range []string{
		"static struct klp_func funcs_0[] = {\n\t{ }\n};",
		`{ .name = NULL, .funcs = funcs_0 }`,
		`{ .name = "binfmt_misc", .funcs = funcs_1 }`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("livepatch.c of a module calling new vmlinux code lacks %q:\n%s", want, src)
		}
	}

	// Callbacks (stent/livepatch.h), in the kernel's order whatever the
	// files' order, on the objects they belong to: one only has a
	// callback.
	src = render(funcs[1:], map[string]string{".text.stent_0": "vmlinux", ".text.stent_1": "ext4"},
		elfdiff.Callback{Kind: "post_unpatch", Object: "vmlinux", Func: "free_state", File: "fs/a.c", NewName: "__stent_0_post_unpatch"},
		elfdiff.Callback{Kind: "pre_patch", Object: "vmlinux", Func: "check", File: "fs/b.c", NewName: "__stent_1_pre_patch"},
		elfdiff.Callback{Kind: "post_patch", Object: "ext4", Func: "hello", File: "fs/ext4/super.c", NewName: "__stent_2_post_patch"})
	for _, want := range []string{
		"extern int __stent_1_pre_patch(struct klp_object *obj); /* check, fs/b.c */",
		"extern void __stent_0_post_unpatch(struct klp_object *obj); /* free_state, fs/a.c */",
		`{ .name = NULL, .funcs = funcs_0, .callbacks = { .pre_patch = __stent_1_pre_patch, .post_unpatch = __stent_0_post_unpatch } },`,
		`{ .name = "ext4", .funcs = funcs_1, .callbacks = { .post_patch = __stent_2_post_patch } },`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("livepatch.c with callbacks lacks %q:\n%s", want, src)
		}
	}
	if r := callbackClashes([]elfdiff.Callback{{Kind: "pre_patch", Object: "vmlinux", Func: "a", File: "x.c"}, {Kind: "pre_patch", Object: "ext4", Func: "b"}, {Kind: "pre_patch", Object: "vmlinux", Func: "c", File: "y.c"}}); len(r) != 1 || r[0].Symbol != "c" || r[0].Rule != elfdiff.RuleCallback {
		t.Errorf("callbackClashes(two pre_patch of vmlinux) = %+v, want one callback refusal naming c", r)
	}
}

func TestBuildArgs(t *testing.T) {
	_, err := Build(t.Context(), Options{Patches: []string{"x.patch"}})
	if err == nil || !strings.Contains(err.Error(), "--kernel") {
		t.Errorf("Build(no kernel) = %v", err)
	}
	_, err = Build(t.Context(), Options{Kernel: "6.1.0-56-amd64"})
	if err == nil || !strings.Contains(err.Error(), "--patch") {
		t.Errorf("Build(no patch) = %v", err)
	}
	_, err = Build(t.Context(), Options{Kernel: "6.1.0-56-amd64", Patches: []string{"x.patch"}, Name: "bad-name", Cache: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("Build(bad name) = %v", err)
	}
	_, err = Build(t.Context(), Options{Kernel: "6.1.0-56-amd64", Patches: []string{filepath.Join(t.TempDir(), "missing.patch")}, Cache: t.TempDir()})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Build(missing patch) = %v, want ErrNotExist", err)
	}
}

func TestVerifyOriginals(t *testing.T) {
	testenv.NeedTools(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "f.c")
	os.WriteFile(src, []byte("extern int sink(int);\nint value(int x) { return sink(x * 2) + 1; }\n"), 0o644)
	obj := filepath.Join(dir, "f.o")
	if out, err := exec.Command("gcc", "-O2", "-c", "-ffunction-sections", "-pg", "-mfentry", "-o", obj, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	orig, err := readObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	fn := orig.Symbol("value")
	shipped := append([]byte(nil), fn.Section.Data[fn.Value:fn.Value+fn.Size]...)
	// Relocated fields hold addresses in a linked kernel: they must not count.
	for _, r := range fn.Section.Relocs {
		copy(shipped[r.Offset:], []byte{0xde, 0xad, 0xbe, 0xef})
	}
	code := func(b []byte) shippedCode {
		return func(string, int, uint64) (*shippedFunc, error) {
			// Calls reach whatever the symbol table says is there:
			// here, any name they need (TestVerifyJumps checks targets).
			return &shippedFunc{code: append([]byte(nil), b...), addr: 0xffffffff81000000, at: func(uint64) []string { return []string{"sink", "__fentry__"} }}, nil
		}
	}
	funcs := []elfdiff.Func{{Name: "value", Object: "vmlinux"}}
	if err := verifyOriginals(orig, funcs, code(shipped)); err != nil {
		t.Errorf("verifyOriginals(same code) = %v", err)
	}
	shipped[len(shipped)-2] ^= 0xff
	if err := verifyOriginals(orig, funcs, code(shipped)); !errors.Is(err, ErrNotReproduced) || !strings.Contains(err.Error(), "value") {
		t.Errorf("verifyOriginals(other code) = %v, want ErrNotReproduced naming value", err)
	}
}

// A truncated payload is refused, not decompressed in part and cached for
// every later build.
func TestVmlinuxTruncatedPayload(t *testing.T) {
	testenv.NeedTools(t, "xz")
	elfFile, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	xz := func(b []byte) []byte {
		cmd := exec.Command("xz", "-c", "--check=crc32", "-0")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	image := func(payload []byte) string {
		img := make([]byte, 4*512+0x10+len(payload))
		copy(img[0x202:], "HdrS")
		img[0x1f1] = 3 // setup sectors: payload base (3+1)*512
		binary.LittleEndian.PutUint32(img[0x248:], 0x10)
		binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
		copy(img[4*512+0x10:], payload)
		p := filepath.Join(t.TempDir(), "vmlinuz")
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if !wholeELF(elfFile) {
		t.Fatal("wholeELF(this test binary) = false")
	}
	whole := xz(elfFile)
	cache := filepath.Join(t.TempDir(), "vmlinux")
	if b, err := Vmlinux(t.Context(), image(whole), filepath.Join(t.TempDir(), "whole")); err != nil || !bytes.Equal(b, elfFile) {
		t.Fatalf("Vmlinux(whole payload) = %d bytes, %v; want the %d-byte ELF", len(b), err, len(elfFile))
	}
	cut := whole[:len(whole)*3/4]
	if _, err := Vmlinux(t.Context(), image(cut), cache); err == nil {
		t.Error("Vmlinux(truncated payload) = nil error")
	}
	if _, err := os.Stat(cache); err == nil {
		t.Error("Vmlinux(truncated payload) cached the partial vmlinux")
	}
}

func TestIncludersHint(t *testing.T) {
	tests := []struct{ header, want string }{
		{"include/linux/fs.h", "'#include <linux/fs.h>'"},
		{"arch/x86/include/asm/tlb.h", "'#include <asm/tlb.h>'"},
		{"fs/ext4/ext4.h", `'#include "ext4.h"' fs/ext4/*.c`},
		{"fs/myinclude/x.h", `'#include "x.h"' fs/myinclude/*.c`},
	}
	for _, tt := range tests {
		if got := includersHint(tt.header); !strings.Contains(got, tt.want) {
			t.Errorf("includersHint(%q) = %q, want it to contain %q", tt.header, got, tt.want)
		}
	}
}
