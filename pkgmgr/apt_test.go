package pkgmgr

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const aptOpts = "-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300 -o APT::Get::Show-Versions=true"

const dpkgQueryCmd = "dpkg-query -W -f=" + dpkgFormat

// afterInstall is the 4-kernel database after linux-image-amd64 moved to 6.1.192-3.
func afterInstall(t *testing.T) string {
	return strings.Replace(testdata(t, "dpkg-query-4kernels.txt"),
		"linux-image-amd64\t6.1.192-2\tii \tlinux-image-6.1.0-56-amd64 (= 6.1.192-2)",
		"linux-image-amd64\t6.1.192-3\tii \tlinux-image-6.1.0-57-amd64 (= 6.1.192-3)", 1)
}

// beforeInstall is the database without 6.1.0-57.
func beforeInstall(t *testing.T) string {
	var lines []string
	for _, l := range strings.Split(testdata(t, "dpkg-query-4kernels.txt"), "\n") {
		if !strings.HasPrefix(l, "linux-image-6.1.0-57-amd64") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// resolveCalls are the commands that resolve the newest kernel through
// linux-image-amd64 and check holds.
func resolveCalls(t *testing.T, holds string) []call {
	return []call{
		{cmd: "apt-get -q --error-on=any -o DPkg::Lock::Timeout=300 update"},
		{cmd: dpkgQueryCmd, stdout: beforeInstall(t)},
		{cmd: "apt-cache policy linux-image-amd64", stdout: testdata(t, "apt-cache-policy-meta.txt")},
		{cmd: "apt-cache show linux-image-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-meta.txt")},
		{cmd: "apt-mark showhold", stdout: holds},
	}
}

func newAptManager(t *testing.T, calls []call, root string) (*Manager, *fakeRunner) {
	f := &fakeRunner{t: t, calls: calls}
	return &Manager{Family: Apt, Runner: f, Root: root, Update: true, Running: "6.1.0-56-amd64"}, f
}

var bootFiles56 = map[string]int{"vmlinuz-6.1.0-56-amd64": 8 << 20, "initrd.img-6.1.0-56-amd64": 30 << 20, "config-6.1.0-56-amd64": 200 << 10}

func TestAptUpgradeInstallsImageAndMetapackage(t *testing.T) {
	root := fakeBoot(t, bootFiles56)
	calls := append(resolveCalls(t, testdata(t, "apt-mark-showhold.txt")),
		call{cmd: "apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-image.txt")},
		call{cmd: "apt-get install " + aptOpts + " --no-remove linux-image-6.1.0-57-amd64=6.1.192-3 linux-image-amd64=6.1.192-3",
			stdout: "Setting up linux-image-6.1.0-57-amd64 (6.1.192-3) ...\n"},
		call{cmd: dpkgQueryCmd, stdout: afterInstall(t)},
	)
	m, f := newAptManager(t, calls, root)
	m.statfs = fixedFS(2<<30, 0, false)
	// The package "writes" its /boot files while apt-get runs.
	f.calls[6].stdout += writeBoot(t, root, "6.1.0-57-amd64")
	res, err := m.Upgrade(context.Background(), Target{})
	if err != nil {
		t.Fatalf("Upgrade: %v", err)
	}
	f.done()
	want := []Change{
		{Name: "linux-image-6.1.0-57-amd64", To: "6.1.192-3"},
		{Name: "linux-image-amd64", From: "6.1.192-2", To: "6.1.192-3"},
	}
	if d := cmp.Diff(want, res.Changes); d != "" {
		t.Errorf("Upgrade changes (-want +got):\n%s", d)
	}
	if res.Release != "6.1.0-57-amd64" || !res.Space.OK || len(res.Files) != 2 {
		t.Errorf("Upgrade = release %q, space %+v, files %v", res.Release, res.Space, res.Files)
	}
	if !slices.Contains(f.envs[6], "DEBIAN_FRONTEND=noninteractive") {
		t.Errorf("apt-get install env = %v, want DEBIAN_FRONTEND=noninteractive", f.envs[6])
	}
}

// writeBoot creates the release's vmlinuz and initrd in root/boot and
// returns "" (so it can be called while building a recorded call).
func writeBoot(t *testing.T, root, release string) string {
	t.Helper()
	fakeBootInto(t, root, map[string]int{"vmlinuz-" + release: 100, "initrd.img-" + release: 100})
	return ""
}

func TestAptUpgradeRefusesHeld(t *testing.T) {
	m, f := newAptManager(t, resolveCalls(t, "linux-image-amd64\n"), fakeBoot(t, bootFiles56))
	_, err := m.Upgrade(context.Background(), Target{})
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "apt-mark unhold linux-image-amd64") {
		t.Fatalf("Upgrade with linux-image-amd64 held = %v, want ErrHeld naming apt-mark unhold", err)
	}
	f.done()
}

func TestAptUpgradeRefusesWithoutSpace(t *testing.T) {
	calls := append(resolveCalls(t, ""),
		call{cmd: "apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-image.txt")})
	m, f := newAptManager(t, calls, fakeBoot(t, bootFiles56))
	m.statfs = fixedFS(40<<20, 10<<30, true)
	res, err := m.Upgrade(context.Background(), Target{})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Upgrade with 40 MiB on /boot = %v, want ErrNoSpace", err)
	}
	// 8 MiB + 200 KiB kernel files and a 30 MiB initramfs, plus 20%.
	if !strings.Contains(err.Error(), "/boot has 40 MiB free, the new kernel needs about 45 MiB") {
		t.Errorf("error = %v, want the numbers", err)
	}
	if res.Space == nil || res.Space.OK || res.Space.SameFS {
		t.Errorf("space check = %+v", res.Space)
	}
	f.done()
}

func TestAptUpgradeDpkgInterrupted(t *testing.T) {
	before := beforeInstall(t)
	calls := append(resolveCalls(t, ""),
		call{cmd: "apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-image.txt")},
		call{cmd: "apt-get install " + aptOpts + " --no-remove linux-image-6.1.0-57-amd64=6.1.192-3 linux-image-amd64=6.1.192-3",
			stderr: "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem. \n", code: 100},
		call{cmd: dpkgQueryCmd, stdout: before},
	)
	m, f := newAptManager(t, calls, fakeBoot(t, bootFiles56))
	m.statfs = fixedFS(2<<30, 0, false)
	res, err := m.Upgrade(context.Background(), Target{})
	if !errors.Is(err, ErrDpkgInterrupted) {
		t.Fatalf("Upgrade = %v, want ErrDpkgInterrupted", err)
	}
	for _, s := range []string{"dpkg was interrupted, you must manually run 'dpkg --configure -a'", "exit status 100", "run dpkg --configure -a as root"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	if len(res.Changes) != 0 {
		t.Errorf("changes after a failed install = %v, want none", res.Changes)
	}
	f.done()
}

func TestAptUpgradeHalfInstalled(t *testing.T) {
	after := strings.Replace(afterInstall(t), "linux-image-6.1.0-57-amd64\t6.1.192-3\tii ", "linux-image-6.1.0-57-amd64\t6.1.192-3\tiF ", 1)
	calls := append(resolveCalls(t, ""),
		call{cmd: "apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-image.txt")},
		call{cmd: "apt-get install " + aptOpts + " --no-remove linux-image-6.1.0-57-amd64=6.1.192-3 linux-image-amd64=6.1.192-3",
			stderr: "update-initramfs: failed for /boot/initrd.img-6.1.0-57-amd64 with 1.\nE: Sub-process /usr/bin/dpkg returned an error code (1)\n", code: 100},
		call{cmd: dpkgQueryCmd, stdout: after},
	)
	m, f := newAptManager(t, calls, fakeBoot(t, bootFiles56))
	m.statfs = fixedFS(2<<30, 0, false)
	res, err := m.Upgrade(context.Background(), Target{})
	if err == nil || !strings.Contains(err.Error(), "update-initramfs: failed") {
		t.Fatalf("Upgrade = %v, want apt's own message", err)
	}
	if d := cmp.Diff([]string{"linux-image-6.1.0-57-amd64 (iF)"}, res.Incomplete); d != "" {
		t.Errorf("Incomplete (-want +got):\n%s", d)
	}
	f.done()
}

func TestAptUpgradeMissingInitramfs(t *testing.T) {
	root := fakeBoot(t, bootFiles56)
	calls := append(resolveCalls(t, ""),
		call{cmd: "apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-image.txt")},
		call{cmd: "apt-get install " + aptOpts + " --no-remove linux-image-6.1.0-57-amd64=6.1.192-3 linux-image-amd64=6.1.192-3"},
		call{cmd: dpkgQueryCmd, stdout: afterInstall(t)},
	)
	fakeBootInto(t, root, map[string]int{"vmlinuz-6.1.0-57-amd64": 100, "initrd.img-6.1.0-57-amd64": 0})
	m, f := newAptManager(t, calls, root)
	m.statfs = fixedFS(2<<30, 0, false)
	_, err := m.Upgrade(context.Background(), Target{})
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "/boot/initrd.img-6.1.0-57-amd64 is empty") {
		t.Fatalf("Upgrade with an empty initramfs = %v, want ErrIncomplete naming it", err)
	}
	f.done()
}

func TestAptUpgradeDryRun(t *testing.T) {
	calls := resolveCalls(t, "")[1:] // no apt-get update on a dry run
	calls = append(calls,
		call{cmd: "apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-image.txt")},
		call{cmd: "apt-get -s install " + aptOpts + " --no-remove linux-image-6.1.0-57-amd64=6.1.192-3 linux-image-amd64=6.1.192-3",
			stdout: testdata(t, "apt-install-sim.txt")},
	)
	m, f := newAptManager(t, calls, fakeBoot(t, bootFiles56))
	m.statfs = fixedFS(2<<30, 0, false)
	res, err := m.Upgrade(context.Background(), Target{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || len(res.Changes) < 2 || res.Space == nil {
		t.Errorf("dry run = %+v", res)
	}
	f.done()
}

func TestAptUpgradeToRelease(t *testing.T) {
	// --to 6.1.0-57-amd64 on a host without the metapackage: only the image.
	noMeta := strings.Replace(beforeInstall(t), "linux-image-amd64\t6.1.192-2\tii ", "linux-image-amd64\t6.1.192-2\tun ", 1)
	calls := []call{
		{cmd: dpkgQueryCmd, stdout: noMeta},
		{cmd: "apt-cache policy linux-image-6.1.0-57-amd64", stdout: "linux-image-6.1.0-57-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-3\n"},
		{cmd: "apt-mark showhold"},
	}
	m, f := newAptManager(t, calls, fakeBoot(t, bootFiles56))
	m.Update = false
	m.statfs = fixedFS(40<<20, 0, false)
	calls = append(calls, call{cmd: "apt-cache show linux-image-6.1.0-57-amd64=6.1.192-3", stdout: testdata(t, "apt-cache-show-image.txt")})
	f.calls = calls
	res, err := m.Upgrade(context.Background(), Target{Release: "6.1.0-57-amd64"})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Upgrade = %v, want ErrNoSpace", err)
	}
	if d := cmp.Diff([]Package{{"linux-image-6.1.0-57-amd64", "6.1.192-3"}}, res.Asked); d != "" {
		t.Errorf("asked (-want +got):\n%s", d)
	}
	f.done()
}
