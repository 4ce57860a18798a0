package debvm

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestOneShotBoot boots a host from the image, checks it runs the kernel
// pinned in GRUB (the image also holds an older one) and sees the local
// repository's newer kernel; then breaks the older kernel's initramfs (a
// truncated file: the kernel finds no init and panics), boots it once with
// grub-reboot and shows the host comes back on the pinned kernel by
// itself. Every boot is read from the console. A one-shot boot that comes
// up, and one that hangs, are TestFleetKernelUpdates' part
// (internal/fleetvm), with Stent installing the kernel through apt.
func TestOneShotBoot(t *testing.T) {
	img, info, ks := TestImage(t)
	repo := TestRepo(t, ks.NewDebs())
	ctx := context.Background()
	start := time.Now()
	h := TestBoot(ctx, t, Config{Image: img, Name: "deb-a", Repo: repo})
	bootTime := time.Since(start)
	res, err := h.Run(ctx, "uname -r; hostname; cat /etc/apt/sources.list.d/debvm.list; ls /boot")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) < 3 || lines[0] != ks.Old.ABI || lines[1] != "deb-a" || lines[2] != RepoSource {
		t.Fatalf("uname -r; hostname; apt source = %q, want %s, deb-a, %s", lines, ks.Old.ABI, RepoSource)
	}
	if !strings.Contains(res.Stdout, "initrd.img-"+ks.Older.ABI) {
		t.Fatalf("/boot: %s; want the older kernel %s installed too", res.Stdout, ks.Older.ABI)
	}
	if b := h.Boots(); len(b) != 1 || b[0].Kernel != ks.Old.ABI {
		t.Fatalf("Boots() = %+v, want one boot of %s", b, ks.Old.ABI)
	}
	if _, err := h.WaitConsole(ctx, regexp.MustCompile(`debvm: deb-a up on `+regexp.QuoteMeta(ks.Old.ABI)), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	res, err = h.Run(ctx, "grub-editenv list; apt-get update -q 2>&1 | tail -1; apt-cache policy "+ks.New.Package)
	if err != nil || !strings.Contains(res.Stdout, "saved_entry="+info.Default) || !strings.Contains(res.Stdout, "Candidate: "+ks.New.Version) {
		t.Fatalf("grub-editenv list; apt-cache policy = %q, %v; want saved_entry=%s and %s %s from the local repository", res.Stdout, err, info.Default, ks.New.Package, ks.New.Version)
	}
	t.Logf("boot to the runner %v", bootTime.Round(time.Second))

	oneShot := func() {
		t.Helper()
		if res, err := h.Run(ctx, "grub-reboot '"+DefaultEntry(info.RootUUID, ks.Older.ABI)+"' && grub-editenv list"); err != nil || !strings.Contains(res.Stdout, "next_entry=") {
			t.Fatalf("grub-reboot: %q, %v", res.Stdout, err)
		}
	}

	// A kernel that does not boot: its initramfs is cut short, so it
	// cannot mount its root and panics (panic=10 reboots), and GRUB, its
	// one-shot spent, boots the pinned kernel.
	if _, err := h.Run(ctx, "truncate -s 4K /boot/initrd.img-"+ks.Older.ABI); err != nil {
		t.Fatal(err)
	}
	oneShot()
	n := len(h.Boots())
	since := len(h.Console())
	start = time.Now()
	if _, err := h.Run(ctx, "systemctl reboot --no-block"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WaitConsoleSince(ctx, since, regexp.MustCompile(`Kernel panic - not syncing|Rebooting automatically due to panic=`), 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	b, err := h.WaitBoot(ctx, n+2, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	boots := h.Boots()
	if boots[n].Kernel != ks.Older.ABI || b.Kernel != ks.Old.ABI {
		t.Fatalf("boots after the broken kernel's one-shot: %+v, want %s (panics) then %s", boots[n:], ks.Older.ABI, ks.Old.ABI)
	}
	if res, err := h.Run(ctx, "uname -r"); err != nil || strings.TrimSpace(res.Stdout) != ks.Old.ABI {
		t.Fatalf("uname -r after the fallback = %q, %v; want %s", res.Stdout, err, ks.Old.ABI)
	}
	t.Logf("broken %s panicked at %s, host back on %s at %s by itself (%v after the reboot)", ks.Older.ABI,
		boots[n].Time.Format(time.TimeOnly), b.Kernel, b.Time.Format(time.TimeOnly), time.Since(start).Round(time.Second))
}
