package debvm

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestKernelUpdate boots a host from the image, checks it runs the older
// kernel pinned in GRUB, installs the newer kernel from the local apt
// repository with the image's fast settings, boots it once with
// grub-reboot and returns to the pinned kernel at the next reboot; then
// breaks the newer kernel's initramfs (it panics) and shows the host comes
// back on the older kernel by itself. Every boot is read from the console.
func TestKernelUpdate(t *testing.T) {
	img, info, ks := TestImage(t)
	repo := TestRepo(t, ks.NewDebs())
	ctx := context.Background()
	start := time.Now()
	h := TestBoot(ctx, t, Config{Image: img, Name: "deb-a", Repo: repo})
	bootTime := time.Since(start)
	res, err := h.Run(ctx, "uname -r; hostname; cat /etc/apt/sources.list.d/debvm.list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 3 || lines[0] != ks.Old.ABI || lines[1] != "deb-a" || lines[2] != RepoSource {
		t.Fatalf("uname -r; hostname; apt source = %q, want %s, deb-a, %s", lines, ks.Old.ABI, RepoSource)
	}
	if b := h.Boots(); len(b) != 1 || b[0].Kernel != ks.Old.ABI {
		t.Fatalf("Boots() = %+v, want one boot of %s", b, ks.Old.ABI)
	}
	if _, err := h.WaitConsole(ctx, regexp.MustCompile(`debvm: deb-a up on `+regexp.QuoteMeta(ks.Old.ABI)), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	res, err = h.Run(ctx, "grub-editenv list")
	if err != nil || !strings.Contains(res.Stdout, "saved_entry="+info.Default) {
		t.Fatalf("grub-editenv list = %q, %v; want saved_entry=%s", res.Stdout, err, info.Default)
	}
	start = time.Now()
	res, err = h.Run(ctx, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "+ks.New.Package+" linux-image-amd64 2>&1")
	if err != nil {
		t.Fatalf("apt-get install: %v\n%s", err, res.Stdout)
	}
	install := time.Since(start)
	res, err = h.Run(ctx, "ls /boot; grep -c gnulinux-"+ks.New.ABI+"-advanced /boot/grub/grub.cfg; grub-editenv list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stdout, "initrd.img-"+ks.New.ABI) || !strings.Contains(res.Stdout, "saved_entry="+info.Default) {
		t.Fatalf("after the install: %s\nwant initrd.img-%s and the default still pinned to %s", res.Stdout, ks.New.ABI, ks.Old.ABI)
	}
	t.Logf("boot to the runner %v, apt-get install of %s %v", bootTime.Round(time.Second), ks.New.Package, install.Round(time.Second))

	// GRUB's one-shot boot: grub-reboot boots the new kernel once, the
	// next reboot returns to the pinned default. Checked on the console.
	oneShot := func() {
		t.Helper()
		if res, err := h.Run(ctx, "grub-reboot '"+DefaultEntry(info.RootUUID, ks.New.ABI)+"' && grub-editenv list"); err != nil || !strings.Contains(res.Stdout, "next_entry=") {
			t.Fatalf("grub-reboot: %q, %v", res.Stdout, err)
		}
	}
	oneShot()
	start = time.Now()
	b, err := h.Reboot(ctx, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b.Kernel != ks.New.ABI {
		t.Fatalf("boot after grub-reboot: kernel %s, want %s", b.Kernel, ks.New.ABI)
	}
	if res, err := h.Run(ctx, "uname -r"); err != nil || strings.TrimSpace(res.Stdout) != ks.New.ABI {
		t.Fatalf("uname -r after grub-reboot = %q, %v; want %s", res.Stdout, err, ks.New.ABI)
	}
	t.Logf("reboot into %s: %v", b.Kernel, time.Since(start).Round(time.Second))
	start = time.Now()
	if b, err = h.Reboot(ctx, 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	if b.Kernel != ks.Old.ABI {
		t.Fatalf("second reboot: kernel %s, want the pinned %s", b.Kernel, ks.Old.ABI)
	}
	t.Logf("reboot back into %s: %v", b.Kernel, time.Since(start).Round(time.Second))

	// A new kernel that does not boot: its initramfs panics (panic=10
	// reboots), and GRUB, its one-shot spent, boots the pinned kernel.
	panicScript := "#!/bin/sh\n[ \"$1\" = prereqs ] && exit 0\n[ \"$(uname -r)\" = " + ks.New.ABI + " ] || exit 0\necho 'debvm: this initramfs panics on purpose'\necho c > /proc/sysrq-trigger\n"
	if err := h.WriteFile(ctx, "/etc/initramfs-tools/scripts/init-top/debvm-panic", []byte(panicScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if res, err := h.Run(ctx, "update-initramfs -u -k "+ks.New.ABI+" 2>&1"); err != nil {
		t.Fatalf("update-initramfs: %v\n%s", err, res.Stdout)
	}
	oneShot()
	n := len(h.Boots())
	since := len(h.Console())
	start = time.Now()
	if _, err := h.Run(ctx, "systemctl reboot --no-block"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WaitConsoleSince(ctx, since, regexp.MustCompile(`Kernel panic - not syncing`), 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	if b, err = h.WaitBoot(ctx, n+2, 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	boots := h.Boots()
	if boots[n].Kernel != ks.New.ABI || b.Kernel != ks.Old.ABI {
		t.Fatalf("boots after the broken kernel's one-shot: %+v, want %s (panics) then %s", boots[n:], ks.New.ABI, ks.Old.ABI)
	}
	if res, err := h.Run(ctx, "uname -r"); err != nil || strings.TrimSpace(res.Stdout) != ks.Old.ABI {
		t.Fatalf("uname -r after the fallback = %q, %v; want %s", res.Stdout, err, ks.Old.ABI)
	}
	t.Logf("broken %s panicked at %s, host back on %s at %s by itself (%v after the reboot)", ks.New.ABI,
		boots[n].Time.Format(time.TimeOnly), b.Kernel, b.Time.Format(time.TimeOnly), time.Since(start).Round(time.Second))
}
