package collect

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/inventory"
)

var update = flag.Bool("update", false, "rewrite golden files")

var now = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// collectFixture runs collect on a fake host tree and blanks what depends
// on the machine the test runs on (/boot's file system).
func collectFixture(t *testing.T, name string) *inventory.Inventory {
	t.Helper()
	inv, err := Host(t.Context(), filepath.Join("testdata", name), filepath.Join("testdata", name, "run/stent"), now)
	if err != nil {
		t.Fatalf("Host(%s) = %v", name, err)
	}
	if inv.Boot.TotalBytes == 0 {
		t.Errorf("Host(%s): /boot size not read", name)
	}
	inv.Boot.TotalBytes, inv.Boot.UsedBytes, inv.Boot.FreeBytes = 0, 0, 0
	return inv
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestCollectDebian(t *testing.T) {
	inv := collectFixture(t, "debian-host")
	k := inv.Kernel
	if k.Release != "6.1.0-54-amd64" || k.PackageVersion != "6.1.190-1" || k.Upstream != "6.1.190" || k.BuildDate != "2026-10-16" || k.SourcePackage != "linux" {
		t.Errorf("Kernel = %+v", k)
	}
	if inv.NewestKernel != "6.1.0-55-amd64" || len(inv.KernelPackages) != 3 {
		t.Errorf("NewestKernel = %s, %d kernel packages; want 6.1.0-55-amd64 of 3 (no -dbg, no removed ones)", inv.NewestKernel, len(inv.KernelPackages))
	}
	codes := map[string]bool{}
	for _, r := range inv.Reboot.Reasons {
		codes[r.Code] = true
	}
	for _, c := range []string{inventory.ReasonNewerKernel, inventory.ReasonRequiredFile, inventory.ReasonCorePackage} {
		if !codes[c] {
			t.Errorf("reboot reasons %v lack %s", inv.Reboot.Reasons, c)
		}
	}
	if codes[inventory.ReasonSameABIRebuild] {
		t.Errorf("reboot reasons %v: same-ABI rebuild without one", inv.Reboot.Reasons)
	}
	if len(inv.StaleProcesses) != 2 || inv.StaleProcesses[0].Unit != "nginx.service" ||
		strings.Join(inv.StaleProcesses[0].Libraries, ",") != "/usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)" ||
		inv.StaleProcesses[1].Libraries[0] != "/usr/lib/x86_64-linux-gnu/libc.so.6 (replaced)" {
		t.Errorf("StaleProcesses = %+v", inv.StaleProcesses)
	}
	if len(inv.LivePatches) != 2 || !inv.LivePatches[1].Manifest || inv.LivePatches[1].CVEs[0] != "CVE-2026-99228" || inv.LivePatches[0].Manifest {
		t.Errorf("LivePatches = %+v", inv.LivePatches)
	}
	out, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "debian-host.golden.json", append(out, '\n'))
	// The JSON is the planner's input format.
	back, err := inventory.Decode("golden", bytes.NewReader(out))
	if err != nil {
		t.Fatalf("inventory.Decode(own output) = %v", err)
	}
	if diff := cmp.Diff(inv, back); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

// A same-ABI rebuild: the package of the running release was replaced by
// another build, which /proc/version shows is not the one running.
func TestCollectSameABIRebuild(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/debian-host", root)
	status := filepath.Join(root, "var/lib/dpkg/status")
	data, _ := os.ReadFile(status)
	data = bytes.Replace(data, []byte("Source: linux-signed-amd64 (6.1.190+1)\nVersion: 6.1.190-1"), []byte("Source: linux-signed-amd64 (6.1.190+2)\nVersion: 6.1.190-2"), 1)
	if err := os.WriteFile(status, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := Host(t.Context(), root, filepath.Join(root, "run/stent"), now)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range inv.Reboot.Reasons {
		found = found || r.Code == inventory.ReasonSameABIRebuild
	}
	if !found || inv.Kernel.PackageVersion != "6.1.190-1" {
		t.Errorf("reasons %+v, running %s; want a same-ABI rebuild of 6.1.190-1", inv.Reboot.Reasons, inv.Kernel.PackageVersion)
	}
}

// The sqlite rpmdb was written by rpm 4.18 (testdata/rpmdb/make-rpmdb.sh).
func TestCollectRPM(t *testing.T) {
	inv := collectFixture(t, "alma-host")
	if inv.OS.Family != "rpm" || inv.Kernel.PackageVersion != "5.14.0-362.8.1.el9_3" || inv.Kernel.Package != "kernel-core" {
		t.Errorf("OS %+v, Kernel %+v", inv.OS, inv.Kernel)
	}
	if inv.NewestKernel != "5.14.0-427.13.1.el9_4.x86_64" || len(inv.KernelPackages) != 2 {
		t.Errorf("NewestKernel = %q of %d", inv.NewestKernel, len(inv.KernelPackages))
	}
	if !inv.Reboot.Required || len(inv.Reboot.Reasons) != 2 {
		t.Errorf("Reboot = %+v, want newer kernel and glibc/systemd after boot", inv.Reboot)
	}
	if !strings.Contains(inv.Sources["packages"], "sqlite rpmdb") {
		t.Errorf("Sources = %v", inv.Sources)
	}
	out, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "alma-host.golden.json", append(out, '\n'))
}

func TestCollectErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(root string)
		want string
	}{
		{"unknown distro", func(r string) {
			os.WriteFile(filepath.Join(r, "etc/os-release"), []byte("ID=plan9\n"), 0o644)
		}, `distribution "plan9" (/etc/os-release): unknown package family`},
		{"no package version", func(r string) {
			os.WriteFile(filepath.Join(r, "proc/version"), []byte("Linux version 6.1.0-54-amd64 #1 SMP\n"), 0o644)
			os.WriteFile(filepath.Join(r, "proc/sys/kernel/osrelease"), []byte("6.1.0-99-custom\n"), 0o644)
		}, "kernel 6.1.0-99-custom: no package version in /proc/version and no linux-image-6.1.0-99-custom package installed"},
		{"bad dpkg status", func(r string) {
			os.WriteFile(filepath.Join(r, "var/lib/dpkg/status"), []byte("Package: a\nStatus: install ok installed\nVersion: 1\n\nnonsense\n"), 0o644)
		}, `/var/lib/dpkg/status:5: want "Field: value"`},
		{"bad btime", func(r string) {
			os.WriteFile(filepath.Join(r, "proc/stat"), []byte("btime soon\n"), 0o644)
		}, `/proc/stat btime "soon"`},
	} {
		root := t.TempDir()
		copyTree(t, "testdata/debian-host", root)
		tt.mod(root)
		_, err := Host(t.Context(), root, filepath.Join(root, "run/stent"), now)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Host = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParseRPMHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 3, 232, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 'b', 'c', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseRPMHeader(b)
		if err == nil && (h.Name == "" || h.Version == "") {
			t.Fatalf("accepted a header without name or version: %+v", h)
		}
	})
}

func FuzzParseDpkgStatus(f *testing.F) {
	data, err := os.ReadFile("testdata/debian-host/var/lib/dpkg/status")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, err := parseDpkgStatus("status", b)
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("accepted %+v", p)
			}
		}
	})
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	// dpkg.log times are local times; fix the zone so golden files do not
	// depend on the machine's.
	time.Local = time.UTC
	os.Exit(m.Run())
}

// An Ubuntu host: the package version and upstream version of the running
// kernel come from /proc/version_signature (Ubuntu's /proc/version names
// neither); without it, from the installed package, with no upstream.
func TestCollectUbuntu(t *testing.T) {
	inv := collectFixture(t, "ubuntu-host")
	k := inv.Kernel
	if inv.OS.ID != "ubuntu" || inv.OS.Family != "deb" || inv.OS.VersionID != "24.04" {
		t.Errorf("OS = %+v, want ubuntu 24.04, family deb", inv.OS)
	}
	if k.Release != "6.8.0-45-generic" || k.PackageVersion != "6.8.0-45.45" || k.Upstream != "6.8.12" || k.Package != "linux-image-6.8.0-45-generic" || k.SourcePackage != "linux" {
		t.Errorf("Kernel = %+v, want 6.8.0-45-generic, package 6.8.0-45.45, upstream 6.8.12", k)
	}
	if inv.NewestKernel != "6.8.0-45-generic" || len(inv.KernelPackages) != 2 || len(inv.Metapackages) != 1 || inv.Metapackages[0].Name != "linux-image-generic" {
		t.Errorf("NewestKernel = %s, %d kernel packages, metapackages %+v", inv.NewestKernel, len(inv.KernelPackages), inv.Metapackages)
	}
	if err := inv.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

// A Debian testing/unstable host: os-release has no VERSION_ID, only the
// next release's codename and "trixie/sid"; both are kept for the planner,
// which takes such a host as Debian unstable.
func TestCollectDebianSid(t *testing.T) {
	inv := collectFixture(t, "debian-sid-host")
	want := inventory.OS{ID: "debian", Codename: "trixie", PrettyName: "Debian GNU/Linux trixie/sid", Family: "deb"}
	if inv.OS.ID != want.ID || inv.OS.VersionID != "" || inv.OS.Codename != want.Codename || inv.OS.PrettyName != want.PrettyName || inv.OS.Family != want.Family {
		t.Errorf("OS = %+v, want %+v", inv.OS, want)
	}
	if k := inv.Kernel; k.Release != "6.11.10-amd64" || k.PackageVersion != "6.11.10-1" || k.Upstream != "6.11.10" {
		t.Errorf("Kernel = %+v, want 6.11.10-amd64, package 6.11.10-1, upstream 6.11.10", k)
	}
	if err := inv.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}
