package pkgmgr

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The dnf sequences below are recorded from dnf 4's documented behaviour
// and output formats, not from a RHEL-family machine (none runs here).

const rpmQueryCmd = "rpm -qa --qf " + rpmFormat

func TestDnfKernels(t *testing.T) {
	f := &fakeRunner{t: t, calls: []call{
		{cmd: rpmQueryCmd, stdout: testdata(t, "rpm-qa-rocky9.txt")},
		{cmd: "dnf -q versionlock list", stdout: "kernel-core-0:5.14.0-284.30.1.el9_2.*\n"},
	}}
	m := &Manager{Family: Dnf, Runner: f, Running: "5.14.0-362.8.1.el9_3.x86_64"}
	ks, err := m.Kernels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range ks {
		s := k.Release + " " + k.Package
		if k.Running {
			s += " running"
		}
		if k.Held {
			s += " held"
		}
		got = append(got, s)
	}
	want := []string{
		"5.14.0-362.13.1.el9_3.x86_64 kernel-core",
		"5.14.0-362.8.1.el9_3.x86_64 kernel-core running",
		"5.14.0-284.30.1.el9_2.x86_64 kernel-core held",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Kernels (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"kernel-5.14.0-362.13.1.el9_3.x86_64", "kernel-core-5.14.0-362.13.1.el9_3.x86_64",
		"kernel-modules-5.14.0-362.13.1.el9_3.x86_64", "kernel-modules-core-5.14.0-362.13.1.el9_3.x86_64"}, ks[0].Packages); d != "" {
		t.Errorf("packages of the newest (-want +got):\n%s", d)
	}
	f.done()
}

func TestDnfUpgradeSequence(t *testing.T) {
	root := fakeBoot(t, map[string]int{"vmlinuz-5.14.0-362.13.1.el9_3.x86_64": 12 << 20, "initramfs-5.14.0-362.13.1.el9_3.x86_64.img": 40 << 20,
		"vmlinuz-5.14.0-362.18.1.el9_3.x86_64": 100, "initramfs-5.14.0-362.18.1.el9_3.x86_64.img": 100})
	before := testdata(t, "rpm-qa-rocky9.txt")
	after := before + "kernel\t(none)\t5.14.0-362.18.1.el9_3\tx86_64\nkernel-core\t(none)\t5.14.0-362.18.1.el9_3\tx86_64\nkernel-modules-core\t(none)\t5.14.0-362.18.1.el9_3\tx86_64\n"
	f := &fakeRunner{t: t, calls: []call{
		{cmd: "dnf -q -y makecache"},
		{cmd: rpmQueryCmd, stdout: before},
		{cmd: "dnf -q repoquery --latest-limit=1 --arch=x86_64 --qf %{version}-%{release} kernel-core", stdout: "5.14.0-362.18.1.el9_3\n"},
		{cmd: "dnf -q versionlock list", stderr: "No such command: versionlock. Please use /usr/bin/dnf --help\n", code: 1},
		{cmd: "dnf -q repoquery --qf %{installsize} kernel-core-5.14.0-362.18.1.el9_3.x86_64", stdout: "72413356\n"},
		{cmd: "dnf -y install kernel-core-5.14.0-362.18.1.el9_3.x86_64 kernel-5.14.0-362.18.1.el9_3.x86_64"},
		{cmd: rpmQueryCmd, stdout: after},
	}}
	m := &Manager{Family: Dnf, Runner: f, Root: root, Update: true, Running: "5.14.0-362.8.1.el9_3.x86_64", statfs: fixedFS(1<<30, 0, false)}
	res, err := m.Upgrade(context.Background(), Target{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Name: "kernel-core.x86_64", To: "5.14.0-362.18.1.el9_3"},
		{Name: "kernel-modules-core.x86_64", To: "5.14.0-362.18.1.el9_3"},
		{Name: "kernel.x86_64", To: "5.14.0-362.18.1.el9_3"},
	}
	if d := cmp.Diff(want, res.Changes); d != "" {
		t.Errorf("changes (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"/boot/vmlinuz-5.14.0-362.18.1.el9_3.x86_64", "/boot/initramfs-5.14.0-362.18.1.el9_3.x86_64.img"}, res.Files); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	f.done()
}

func TestDnfUpgradeVersionlocked(t *testing.T) {
	f := &fakeRunner{t: t, calls: []call{
		{cmd: rpmQueryCmd, stdout: testdata(t, "rpm-qa-rocky9.txt")},
		{cmd: "dnf -q versionlock list", stdout: "Last metadata expiration check: 0:01:02 ago on Tue 01 Dec 2026.\nkernel-core-0:5.14.0-362.13.1.el9_3.*\n"},
	}}
	m := &Manager{Family: Dnf, Runner: f, Running: "5.14.0-362.8.1.el9_3.x86_64"}
	_, err := m.Upgrade(context.Background(), Target{Version: "5.14.0-362.18.1.el9_3"})
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "dnf versionlock delete kernel-core") {
		t.Fatalf("Upgrade = %v, want ErrHeld", err)
	}
	f.done()
}

func TestDnfCleanupSequence(t *testing.T) {
	after := strings.ReplaceAll(testdata(t, "rpm-qa-rocky9.txt"), "5.14.0-284.30.1.el9_2", "gone")
	var kept []string
	for _, l := range strings.Split(after, "\n") {
		if !strings.Contains(l, "gone") {
			kept = append(kept, l)
		}
	}
	f := &fakeRunner{t: t, calls: []call{
		{cmd: rpmQueryCmd, stdout: testdata(t, "rpm-qa-rocky9.txt")},
		{cmd: "dnf -q versionlock list"},
		{cmd: "dnf -y remove kernel-5.14.0-284.30.1.el9_2.x86_64 kernel-core-5.14.0-284.30.1.el9_2.x86_64 kernel-modules-5.14.0-284.30.1.el9_2.x86_64"},
		{cmd: rpmQueryCmd, stdout: strings.Join(kept, "\n")},
	}}
	m := &Manager{Family: Dnf, Runner: f, Running: "5.14.0-362.8.1.el9_3.x86_64"}
	removed, err := m.Cleanup(context.Background(), Policy{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Release != "5.14.0-284.30.1.el9_2.x86_64" {
		t.Errorf("Cleanup removed %+v", removed)
	}
	f.done()
}

func TestParseVersionlock(t *testing.T) {
	got := parseVersionlock([]byte("kernel-core-0:5.14.0-362.8.1.el9_3.*\nkernel-5.14.0-362.8.1.el9_3\n# comment\n"))
	want := map[string]string{"kernel-core": "5.14.0-362.8.1.el9_3", "kernel": "5.14.0-362.8.1.el9_3"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parseVersionlock (-want +got):\n%s", d)
	}
}
