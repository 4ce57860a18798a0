package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
)

// TestSourceFromCachedDeb extracts a linux-source package that is already in
// the cache (a small one made with dpkg-deb), with no progress writer: the
// callers that pass nil (the factory's tests) panicked on a cold cache.
func TestSourceFromCachedDeb(t *testing.T) {
	testenv.NeedTools(t, "dpkg-deb", "tar", "xz", "bash")
	dir := t.TempDir()
	// The inner tarball: linux-source-6.1/{Makefile,kernel/fork.c}.
	src := filepath.Join(dir, "src")
	writeFiles(t, src, map[string]string{
		"linux-source-6.1/Makefile":      "VERSION = 6\n",
		"linux-source-6.1/kernel/fork.c": "int fork;\n",
	})
	pkg := filepath.Join(dir, "pkg")
	writeFiles(t, pkg, map[string]string{
		"DEBIAN/control": "Package: linux-source-6.1\nVersion: 6.1.999-1\nArchitecture: all\nMaintainer: test <t@example.invalid>\nDescription: test\n",
	})
	if err := os.MkdirAll(filepath.Join(pkg, "usr/src"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("tar", "-cJf", filepath.Join(pkg, "usr/src/linux-source-6.1.tar.xz"), "-C", src, "linux-source-6.1")
	cache := filepath.Join(dir, "cache")
	if err := os.MkdirAll(filepath.Join(cache, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	run("dpkg-deb", "--build", "-Zgzip", pkg, filepath.Join(cache, "debs", "linux-source-6.1_6.1.999-1_all.deb"))

	tree, err := Source(context.Background(), cache, "6.1.999-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "source", "6.1.999-1", "tree"); tree != want {
		t.Errorf("tree = %s, want %s", tree, want)
	}
	if b, err := os.ReadFile(filepath.Join(tree, "kernel/fork.c")); err != nil || string(b) != "int fork;\n" {
		t.Errorf("kernel/fork.c = %q, %v", b, err)
	}
	// A second call finds the completed tree without the package.
	if err := os.Remove(filepath.Join(cache, "debs", "linux-source-6.1_6.1.999-1_all.deb")); err != nil {
		t.Fatal(err)
	}
	if again, err := Source(context.Background(), cache, "6.1.999-1", nil); err != nil || again != tree {
		t.Errorf("second Source = %s, %v", again, err)
	}
}
