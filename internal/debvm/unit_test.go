package debvm

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
)

func TestParseCandidate(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"linux-image-6.1.0-57-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-3\n  Version table:\n", "6.1.192-3"},
		{"linux-image-6.1.0-40-amd64:\n  Installed: (none)\n  Candidate: (none)\n", ""},
		{"", ""},
	} {
		if got := parseCandidate(tc.in); got != tc.want {
			t.Errorf("parseCandidate(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSortABIs(t *testing.T) {
	in := []string{"linux-image-6.1.0-57-amd64", "linux-image-6.1.0-9-amd64", "linux-image-6.1.0-56-amd64", "linux-image-6.10.0-1-amd64"}
	sortABIs(in)
	want := "linux-image-6.1.0-9-amd64 linux-image-6.1.0-56-amd64 linux-image-6.1.0-57-amd64 linux-image-6.10.0-1-amd64"
	if got := strings.Join(in, " "); got != want {
		t.Errorf("sortABIs = %s, want %s", got, want)
	}
}

func TestCleanLine(t *testing.T) {
	in := "\x1b[H\x1b[J\x1b[1;1H  Booting `Debian GNU/Linux, with Linux 6.1.0-56-amd64'\r"
	if got, want := cleanLine(in), "  Booting `Debian GNU/Linux, with Linux 6.1.0-56-amd64'"; got != want {
		t.Errorf("cleanLine(%q) = %q, want %q", in, got, want)
	}
}

// TestConsole feeds a console two boots and reads them back, live and
// from the log file.
func TestConsole(t *testing.T) {
	var log bytes.Buffer
	var seen []BootInfo
	c := newConsole(&log, func(b BootInfo) { seen = append(seen, b) })
	before := time.Now()
	c.read(strings.NewReader("GRUB\r\n[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12)\ndebvm: h1 up on 6.1.0-56-amd64\ndebvm: h1 going down\n[    0.000000] Linux version 6.1.0-57-amd64 (x) y\npartial"))
	lines, boots := c.snapshot()
	if len(lines) != 6 || lines[5].Text != "partial" || lines[0].Text != "GRUB" {
		t.Fatalf("lines = %+v", lines)
	}
	if len(boots) != 2 || boots[0].Kernel != "6.1.0-56-amd64" || boots[1].Kernel != "6.1.0-57-amd64" || boots[1].Line != 4 || len(seen) != 2 {
		t.Fatalf("boots = %+v, seen %+v", boots, seen)
	}
	if !boots[0].Down.IsZero() || !boots[0].Up.Equal(lines[2].Time) || !boots[1].Down.Equal(lines[3].Time) || !boots[1].Up.IsZero() {
		t.Fatalf("boots = %+v, seen %+v", boots, seen)
	}
	if boots[0].Time.Before(before) {
		t.Errorf("boot time %v before the read began (%v)", boots[0].Time, before)
	}
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, log.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	pl, pb, err := ParseConsoleLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl) != 6 || len(pb) != 2 || !pb[1].Down.Equal(boots[1].Down.Truncate(time.Microsecond)) || !pb[1].Time.Equal(boots[1].Time.Truncate(time.Microsecond)) || pb[1].Kernel != boots[1].Kernel {
		t.Fatalf("ParseConsoleLog = %+v, %+v; want the live boots %+v", pl, pb, boots)
	}
}

// TestConsoleLineTime checks that a line's time is that of its first
// visible byte, not of terminal escapes left before it.
func TestConsoleLineTime(t *testing.T) {
	var log bytes.Buffer
	c := newConsole(&log, nil)
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() { c.read(r); close(done) }()
	w.Write([]byte("\x1b[H\x1b[J"))
	time.Sleep(300 * time.Millisecond)
	mid := time.Now()
	w.Write([]byte("[    0.000000] Linux version 6.1.0-57-amd64 (x)\n"))
	w.Close()
	<-done
	_, boots := c.snapshot()
	if len(boots) != 1 || boots[0].Time.Before(mid) {
		t.Fatalf("boots = %+v, want one at or after %v (the visible text), not at the escapes", boots, mid)
	}
}

// TestZstdDeb builds a small package with dpkg-deb, xz-compressed as
// Debian's kernel images are, and checks zstdDeb keeps its control data
// and file tree byte for byte and leaves a gzip-compressed one alone.
func TestZstdDeb(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "ar", "xz", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found (make deps)", tool)
			}
			t.Skipf("%s not found (make deps)", tool)
		}
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(tree, "lib/modules/9.9.9/kernel"), 0o755)
	os.WriteFile(filepath.Join(tree, "DEBIAN/control"), []byte("Package: debvm-zstd-test\nVersion: 1.0\nArchitecture: all\nMaintainer: Stent <stent@example.org>\nDescription: test\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "lib/modules/9.9.9/kernel/a.ko"), bytes.Repeat([]byte("module "), 5000), 0o644)
	build := func(comp, out string) string {
		t.Helper()
		p := filepath.Join(dir, out)
		if b, err := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+comp, "--build", tree, p).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -Z%s: %v: %s", comp, err, b)
		}
		return p
	}
	run := func(name string, args ...string) string {
		t.Helper()
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return string(b)
	}
	ctx := context.Background()
	xzDeb := build("xz", "x.deb")
	zDeb := filepath.Join(dir, "z.deb")
	if ok, err := zstdDeb(ctx, xzDeb, zDeb); !ok || err != nil {
		t.Fatalf("zstdDeb(xz package) = %v, %v; want recompressed", ok, err)
	}
	if got := strings.Fields(run("ar", "t", zDeb)); strings.Join(got, " ") != "debian-binary control.tar.xz data.tar.zst" {
		t.Errorf("members of the recompressed package: %v", got)
	}
	if a, b := run("dpkg-deb", "--fsys-tarfile", xzDeb), run("dpkg-deb", "--fsys-tarfile", zDeb); a != b {
		t.Error("file trees differ after recompression")
	}
	if a, b := run("dpkg-deb", "--info", xzDeb), run("dpkg-deb", "--info", zDeb); !strings.Contains(b, "Package: debvm-zstd-test") ||
		a[strings.Index(a, "Package:"):] != b[strings.Index(b, "Package:"):] {
		t.Errorf("control data differs:\n%s\n%s", a, b)
	}
	if ok, err := zstdDeb(ctx, build("gzip", "g.deb"), filepath.Join(dir, "g2.deb")); ok || err != nil {
		t.Errorf("zstdDeb(gzip package) = %v, %v; want left alone", ok, err)
	}
}
