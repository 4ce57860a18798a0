package kinfo

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func note(name string, typ uint32, desc []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	n := append([]byte(name), 0)
	for len(n)%4 != 0 {
		n = append(n, 0)
	}
	b = append(b, n...)
	d := append([]byte(nil), desc...)
	for len(d)%4 != 0 {
		d = append(d, 0)
	}
	return append(b, d...)
}

func TestParseBuildID(t *testing.T) {
	id := []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
	// The Xen and Linux notes come first in a real vmlinux.
	notes := append(note("Linux", 6, []byte("6.1.0")), note("GNU", 3, id)...)
	got, err := ParseBuildID(notes)
	if err != nil {
		t.Fatal(err)
	}
	if want := "deadbeef0102030405060708090a0b0c0d0e0f10"; got != want {
		t.Errorf("ParseBuildID = %s, want %s", got, want)
	}
	for _, bad := range [][]byte{nil, notes[:10], notes[:30], note("Linux", 6, []byte("x"))} {
		if _, err := ParseBuildID(bad); err == nil {
			t.Errorf("ParseBuildID(%x) succeeded, want error", bad)
		}
	}
}

func TestPackageVersion(t *testing.T) {
	tests := []struct{ release, version, want string }{
		{"6.1.0-56-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)", "6.1.192-2"},
		{"5.10.0-30-amd64", "#1 SMP Debian 5.10.218-1 (2024-06-01)", "5.10.218-1"},
		{"5.14.0-362.8.1.el9_3.x86_64", "#1 SMP PREEMPT_DYNAMIC Tue Nov 7 14:54:22 EST 2023", "5.14.0-362.8.1.el9_3"},
		{"6.18.44-custom", "#1 SMP", ""},
	}
	for _, tt := range tests {
		if got := PackageVersion(tt.release, tt.version); got != tt.want {
			t.Errorf("PackageVersion(%q, %q) = %q, want %q", tt.release, tt.version, got, tt.want)
		}
	}
}

func TestDecodeTaint(t *testing.T) {
	// K (15), O (12), E (13): a host with an unsigned out-of-tree live patch.
	got := DecodeTaint(1<<15 | 1<<12 | 1<<13)
	if s := got.String(); s != "OEK" {
		t.Errorf("DecodeTaint(K|O|E).String() = %q, want OEK", s)
	}
	if u := DecodeTaint(1 << 40); len(u.Flags) != 1 || u.Flags[0].Letter != "?" {
		t.Errorf("DecodeTaint(bit 40) = %+v, want one unknown flag", u.Flags)
	}
}

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadAndSupport(t *testing.T) {
	root := t.TempDir()
	write(t, root, "proc/sys/kernel/osrelease", "6.1.0-56-amd64\n")
	write(t, root, "proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)\n")
	write(t, root, "proc/version", "Linux version 6.1.0-56-amd64 ... Debian 6.1.192-2 (2026-11-16)\n")
	write(t, root, "sys/kernel/notes", string(note("GNU", 3, []byte{1, 2, 3, 4})))
	write(t, root, "proc/sys/kernel/random/boot_id", "b00t\n")
	k, err := Read(root)
	if err != nil {
		t.Fatal(err)
	}
	want := &Kernel{Release: "6.1.0-56-amd64", Version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)",
		ProcVersion: "Linux version 6.1.0-56-amd64 ... Debian 6.1.192-2 (2026-11-16)", PackageVersion: "6.1.192-2",
		BuildID: "01020304", Arch: "amd64", BootID: "b00t"}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("Read mismatch (-want +got):\n%s", diff)
	}

	// No livepatch sysfs and a config without CONFIG_LIVEPATCH.
	write(t, root, "boot/config-6.1.0-56-amd64", "CONFIG_MODULES=y\n# CONFIG_LIVEPATCH is not set\n")
	s := CheckSupport(root, k.Release)
	if s.Supported || len(s.Reasons) != 1 || s.Reasons[0] != "CONFIG_LIVEPATCH is not set in the kernel config" {
		t.Errorf("CheckSupport(no livepatch) = %+v", s)
	}
	// Supported, but locked down and modules disabled.
	write(t, root, "sys/kernel/livepatch/.keep", "")
	write(t, root, "sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
	s = CheckSupport(root, k.Release)
	if !s.Supported || s.Lockdown != "integrity" {
		t.Errorf("CheckSupport(lockdown) = %+v, want supported with lockdown integrity", s)
	}
	write(t, root, "proc/sys/kernel/modules_disabled", "1\n")
	if s = CheckSupport(root, k.Release); s.Supported {
		t.Errorf("CheckSupport(modules_disabled) = %+v, want not supported", s)
	}
}

func TestReadDistro(t *testing.T) {
	root := t.TempDir()
	write(t, root, "usr/lib/os-release", "# comment\nNAME=\"AlmaLinux\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID='9.3'\nPRETTY_NAME=\"AlmaLinux 9.3 (Shamrock Pampas Cat)\"\n")
	d, err := ReadDistro(root)
	if err != nil {
		t.Fatal(err)
	}
	want := &Distro{ID: "almalinux", VersionID: "9.3", PrettyName: "AlmaLinux 9.3 (Shamrock Pampas Cat)", IDLike: []string{"rhel", "centos", "fedora"}, Source: "/usr/lib/os-release"}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("ReadDistro mismatch (-want +got):\n%s", diff)
	}
	if _, err := ReadDistro(t.TempDir()); err == nil {
		t.Error("ReadDistro with no os-release succeeded")
	}
}
