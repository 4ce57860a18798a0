package debvm

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInstallKernel boots a host from the image, checks it runs the older
// kernel pinned in GRUB, and installs the newer kernel from the local apt
// repository with the image's fast settings.
func TestInstallKernel(t *testing.T) {
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
}
