package kpkg

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/testenv"
)

func TestParseABI(t *testing.T) {
	tests := []struct {
		in      string
		want    abi
		wantErr bool
	}{
		{in: "6.1.0-56-amd64", want: abi{full: "6.1.0-56-amd64", number: "6.1.0-56", series: "6.1", flavour: "amd64", commonPk: "linux-headers-6.1.0-56-common"}},
		{in: "6.1.0-55-cloud-amd64", want: abi{full: "6.1.0-55-cloud-amd64", number: "6.1.0-55", series: "6.1", flavour: "cloud-amd64", commonPk: "linux-headers-6.1.0-55-common"}},
		{in: "6.1.0-56-rt-amd64", want: abi{full: "6.1.0-56-rt-amd64", number: "6.1.0-56", series: "6.1", flavour: "rt-amd64", commonPk: "linux-headers-6.1.0-56-common-rt"}},
		{in: "6.12.9-amd64", wantErr: true},
		{in: "6.1.0-56", wantErr: true},
		{in: "../../etc", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseABI(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseABI(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(abi{})); diff != "" {
			t.Errorf("parseABI(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

const aptShowKbuild = `Package: linux-kbuild-6.1
Source: linux
Version: 6.1.192-2
Installed-Size: 7045
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Depends: libc6 (>= 2.34), libssl3 (>= 3.0.0)
Description: Kbuild infrastructure for Linux 6.1
Description-md5: 0b6bd3c5d2f8b3c1b0d0a8c6f1c2b4a1
Section: kernel
Priority: optional
Filename: pool/updates/main/l/linux/linux-kbuild-6.1_6.1.192-2_amd64.deb
Size: 1568188

Package: linux-kbuild-6.1
Source: linux
Version: 6.1.176-1
Installed-Size: 7041
Description: Kbuild infrastructure for Linux 6.1
 A multi-line description
 Version: 9.9.9-not-a-field
Filename: pool/main/l/linux/linux-kbuild-6.1_6.1.176-1_amd64.deb

Package: linux-kbuild-6.1-other
Version: 1.0-1

Package: linux-kbuild-6.1
Version: 6.1.192-2
`

func TestParseAptShow(t *testing.T) {
	tests := []struct {
		out, name string
		want      []string
	}{
		{aptShowKbuild, "linux-kbuild-6.1", []string{"6.1.192-2", "6.1.176-1"}},
		{aptShowKbuild, "linux-kbuild-6.1-other", []string{"1.0-1"}},
		{aptShowKbuild, "linux-kbuild-6.12", nil},
		{"", "linux-kbuild-6.1", nil},
	}
	for _, tt := range tests {
		got := parseAptShow([]byte(tt.out), tt.name)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseAptShow(..., %q) mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestPickKbuild(t *testing.T) {
	tests := []struct {
		have    []string
		want    string
		got     string
		wantErr bool
	}{
		{have: []string{"6.1.176-1", "6.1.192-2"}, want: "6.1.192-2", got: "6.1.192-2"},
		{have: []string{"6.1.176-1", "6.1.192-2"}, want: "6.1.192-1", got: "6.1.192-2"},
		{have: []string{"6.1.192-10", "6.1.192-9", "6.1.192-2"}, want: "6.1.192-1", got: "6.1.192-10"},
		{have: []string{"6.1.176-1"}, want: "6.1.192-1", wantErr: true},
		{have: []string{"6.1.192-3", "6.1.176-1"}, want: "6.1.190-1", got: "6.1.192-3"},
		{have: []string{"6.1.194-1", "6.1.192-3", "6.1.192-2", "6.1.176-1"}, want: "6.1.190-1", got: "6.1.192-2"},
		{have: []string{"6.12.5-1"}, want: "6.1.190-1", wantErr: true},
		{have: nil, want: "6.1.192-1", wantErr: true},
	}
	for _, tt := range tests {
		got, err := pickKbuild(tt.have, tt.want)
		if (err != nil) != tt.wantErr {
			t.Errorf("pickKbuild(%v, %q) error = %v, want error %v", tt.have, tt.want, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("pickKbuild(%v, %q) error = %v, want ErrNotFound", tt.have, tt.want, err)
		}
		if got != tt.got {
			t.Errorf("pickKbuild(%v, %q) = %q, want %q", tt.have, tt.want, got, tt.got)
		}
	}
}

func TestDebFileVersion(t *testing.T) {
	tests := []struct {
		file, name, version string
		ok                  bool
	}{
		{"/c/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb", "linux-image-6.1.0-56-amd64", "6.1.192-2", true},
		{"linux-headers-6.1.0-56-common_6.1.192-2_all.deb", "linux-headers-6.1.0-56-common", "6.1.192-2", true},
		{"foo_1%3a2.0-1_amd64.deb", "foo", "1:2.0-1", true},
		{"foo_1.0_amd64.tar", "", "", false},
		{"foo-1.0.deb", "", "", false},
	}
	for _, tt := range tests {
		name, version, ok := debFileVersion(tt.file)
		if name != tt.name || version != tt.version || ok != tt.ok {
			t.Errorf("debFileVersion(%q) = %q, %q, %v, want %q, %q, %v", tt.file, name, version, ok, tt.name, tt.version, tt.ok)
		}
	}
}

func TestNewest(t *testing.T) {
	if got := newest([]string{"6.1.192-2", "6.1.192-10", "6.1.99-1", "1:0.1-1"}); got != "1:0.1-1" {
		t.Errorf("newest(...) = %q, want 1:0.1-1", got)
	}
}

// TestFixTree builds a miniature of the unpacked header packages and checks
// that every absolute link and include is redirected into the tree.
func TestFixTree(t *testing.T) {
	root := t.TempDir()
	mk := func(path, data string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, path string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/lib/linux-kbuild-6.1/scripts/Makefile.build", "# build\n")
	mk("usr/src/linux-headers-6.1.0-56-common/Makefile", "include $(srctree)/scripts/Kbuild.include\n")
	mk("usr/src/linux-headers-6.1.0-56-amd64/Makefile", "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n")
	mk("usr/src/linux-headers-6.1.0-56-amd64/arch/x86/Makefile", "# arch\ninclude /usr/src/linux-headers-6.1.0-56-common/Makefile\n-include /nonexistent/Makefile\n")
	link("/usr/lib/linux-kbuild-6.1/scripts", "usr/src/linux-headers-6.1.0-56-amd64/scripts")
	link("../../lib/linux-kbuild-6.1/scripts", "usr/src/linux-headers-6.1.0-56-common/scripts")
	link("/usr/src/linux-headers-6.1.0-56-amd64", "lib/modules/6.1.0-56-amd64/build")

	if err := fixTree(root); err != nil {
		t.Fatalf("fixTree: %v", err)
	}

	links := map[string]string{
		"usr/src/linux-headers-6.1.0-56-amd64/scripts":  "../../lib/linux-kbuild-6.1/scripts",
		"usr/src/linux-headers-6.1.0-56-common/scripts": "../../lib/linux-kbuild-6.1/scripts",
		"lib/modules/6.1.0-56-amd64/build":              "../../../usr/src/linux-headers-6.1.0-56-amd64",
	}
	for path, want := range links {
		got, err := os.Readlink(filepath.Join(root, path))
		if err != nil || got != want {
			t.Errorf("Readlink(%s) = %q, %v, want %q", path, got, err, want)
		}
		if _, err := os.Stat(filepath.Join(root, path)); err != nil {
			t.Errorf("%s does not resolve: %v", path, err)
		}
	}
	files := map[string]string{
		"usr/src/linux-headers-6.1.0-56-amd64/Makefile":          "include $(dir $(lastword $(MAKEFILE_LIST)))../linux-headers-6.1.0-56-common/Makefile\n",
		"usr/src/linux-headers-6.1.0-56-amd64/arch/x86/Makefile": "# arch\ninclude $(dir $(lastword $(MAKEFILE_LIST)))../../../linux-headers-6.1.0-56-common/Makefile\n-include /nonexistent/Makefile\n",
		"usr/src/linux-headers-6.1.0-56-common/Makefile":         "include $(srctree)/scripts/Kbuild.include\n",
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("%s after fixTree mismatch (-want +got):\n%s", path, diff)
		}
	}

	// A second run changes nothing.
	if err := fixTree(root); err != nil {
		t.Fatalf("fixTree again: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(root, "usr/src/linux-headers-6.1.0-56-amd64/Makefile"))
	if string(got) != files["usr/src/linux-headers-6.1.0-56-amd64/Makefile"] {
		t.Errorf("second fixTree changed the Makefile to %q", got)
	}
}

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.lock")
	unlock, err := Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Lock while held = %v, want DeadlineExceeded", err)
	}
	unlock()
	unlock2, err := Lock(context.Background(), path)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
}

func TestFetchBadABI(t *testing.T) {
	_, err := fetch(context.Background(), t.TempDir(), "not-an-abi", nil)
	if err == nil || !strings.Contains(err.Error(), "6.1.0-56-amd64") {
		t.Errorf("fetch(not-an-abi) = %v, want an error showing the expected form", err)
	}
}

// TestFetch downloads (or takes from the cache) a real Debian kernel and
// builds a module against its headers.
func TestFetch(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads a Debian kernel; skipped under -short")
	}
	testenv.NeedTools(t, "apt-get", "dpkg-deb", "make", "gcc-12")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var log strings.Builder
	k, err := Fetch(ctx, "6.1.0-56-amd64", &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	if k.PackageVersion != "6.1.192-2" || k.Release != "6.1.0-56-amd64" {
		t.Errorf("Fetch = version %q release %q, want 6.1.192-2, 6.1.0-56-amd64", k.PackageVersion, k.Release)
	}
	for _, p := range []string{k.Vmlinuz, k.Config, k.SystemMap, k.ModulesDir, k.HeadersDir, filepath.Join(k.HeadersDir, "scripts", "Makefile.build"), filepath.Join(k.ModulesDir, "build", "Makefile")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("Fetch result: %v", err)
		}
	}

	// Again: from the cache, and the same answer.
	start := time.Now()
	k2, err := Fetch(ctx, "6.1.0-56-amd64", nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, k2); diff != "" {
		t.Errorf("second Fetch mismatch (-first +second):\n%s", diff)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cached Fetch took %v", d)
	}

	dir := t.TempDir()
	src := "#include <linux/module.h>\nstatic int __init m_init(void) { return 0; }\nmodule_init(m_init);\nMODULE_LICENSE(\"GPL\");\n"
	if err := os.WriteFile(filepath.Join(dir, "kpkg_probe.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Kbuild"), []byte("obj-m := kpkg_probe.o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "make", "-C", k.HeadersDir, "M="+dir, "modules").CombinedOutput()
	if err != nil {
		t.Fatalf("make modules against %s: %v\n%s", k.HeadersDir, err, out)
	}
	vermagic, err := exec.Command("modinfo", "-F", "vermagic", filepath.Join(dir, "kpkg_probe.ko")).Output()
	if err != nil {
		t.Fatalf("modinfo: %v", err)
	}
	if !strings.HasPrefix(string(vermagic), "6.1.0-56-amd64 ") {
		t.Errorf("vermagic = %q, want 6.1.0-56-amd64 ...", vermagic)
	}
}

func TestFetchNotFound(t *testing.T) {
	if testing.Short() {
		t.Skip("asks apt; skipped under -short")
	}
	testenv.NeedTools(t, "apt-cache")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := fetch(ctx, t.TempDir(), "6.1.0-9999-amd64", nil)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("fetch(6.1.0-9999-amd64) = %v, want ErrNotFound", err)
	}
}

func FuzzParseAptShow(f *testing.F) {
	f.Add([]byte(aptShowKbuild), "linux-kbuild-6.1")
	f.Add([]byte("Package: a\nVersion: 1\n\n"), "a")
	f.Fuzz(func(t *testing.T, out []byte, name string) {
		for _, v := range parseAptShow(out, name) {
			if strings.ContainsAny(v, "\n") || v != strings.TrimSpace(v) {
				t.Errorf("parseAptShow returned version %q", v)
			}
		}
	})
}
