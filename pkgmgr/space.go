package pkgmgr

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Defaults when /boot holds no kernel to measure: a Debian 6.1 kernel's
// vmlinuz, System.map and config are about 12 MiB, its stock initramfs
// about 30-60 MiB.
const (
	defaultKernelFiles = 16 << 20
	defaultInitramfs   = 64 << 20
)

// spaceMargin is added to every estimate: update-initramfs and the boot
// loader's tools write temporary copies.
const spaceMarginPercent = 20

func statfs(path string) (free uint64, dev uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	var s unix.Stat_t
	if err := unix.Stat(path, &s); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), s.Dev, nil
}

func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// bootEstimate estimates what a new kernel writes to /boot from the
// kernels already there: the largest kernel image plus System.map and
// config of any release, and the largest initramfs.
func bootEstimate(bootDir string) (uint64, string) {
	ents, _ := os.ReadDir(bootDir)
	var image, initrd int64
	perRelease := map[string]int64{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		n := e.Name()
		switch {
		case strings.HasPrefix(n, "initrd.img-"), strings.HasPrefix(n, "initramfs-") && strings.HasSuffix(n, ".img"):
			if strings.HasSuffix(n, ".dpkg-bak") || strings.Contains(n, "kdump") || strings.Contains(n, "rescue") {
				continue
			}
			initrd = max(initrd, info.Size())
		default:
			for _, pre := range []string{"vmlinuz-", "System.map-", "config-"} {
				if r, ok := strings.CutPrefix(n, pre); ok && !strings.Contains(r, "rescue") {
					perRelease[r] += info.Size()
				}
			}
		}
	}
	for _, s := range perRelease {
		image = max(image, s)
	}
	var how []string
	if image == 0 {
		image = defaultKernelFiles
		how = append(how, fmt.Sprintf("kernel files %d MiB (default: no kernel in /boot to measure)", image>>20))
	} else {
		how = append(how, fmt.Sprintf("kernel files %d MiB (the largest release in /boot)", image>>20))
	}
	if initrd == 0 {
		initrd = defaultInitramfs
		how = append(how, fmt.Sprintf("initramfs %d MiB (default)", initrd>>20))
	} else {
		how = append(how, fmt.Sprintf("initramfs %d MiB (the largest in /boot)", initrd>>20))
	}
	total := uint64(image+initrd) * (100 + spaceMarginPercent) / 100
	return total, strings.Join(how, ", ") + fmt.Sprintf(", plus %d%%", spaceMarginPercent)
}

// checkSpace compares free space on /boot (and on the filesystem of
// /usr/lib/modules when it is another) with what a kernel package of
// pkgSize installed bytes needs.
func (m *Manager) checkSpace(pkgSize uint64) (*SpaceCheck, error) {
	sf := m.statfs
	if sf == nil {
		sf = statfs
	}
	boot := filepath.Join(m.root(), "boot")
	modules := filepath.Join(m.root(), "usr/lib/modules")
	if _, err := os.Stat(modules); err != nil {
		modules = filepath.Join(m.root(), "usr")
	}
	bootFree, bootDev, err := sf(boot)
	if err != nil {
		return nil, fmt.Errorf("check /boot space: %w", err)
	}
	rootFree, rootDev, err := sf(modules)
	if err != nil {
		return nil, fmt.Errorf("check space for the kernel's modules: %w", err)
	}
	need, how := bootEstimate(boot)
	sc := &SpaceCheck{BootPath: "/boot", BootFree: bootFree, BootNeed: need, Estimate: how, SameFS: bootDev == rootDev}
	if sc.SameFS {
		sc.BootNeed += pkgSize
		sc.Estimate += fmt.Sprintf("; /boot shares its filesystem with the modules: plus the package's installed size %d MiB", pkgSize>>20)
		sc.OK = sc.BootFree >= sc.BootNeed
	} else {
		sc.RootPath = strings.TrimPrefix(modules, strings.TrimSuffix(m.root(), "/"))
		sc.RootFree = rootFree
		sc.RootNeed = pkgSize
		sc.OK = sc.BootFree >= sc.BootNeed && sc.RootFree >= sc.RootNeed
	}
	return sc, nil
}

// spaceError says what is short and by how much.
func spaceError(sc *SpaceCheck) error {
	if sc.BootFree < sc.BootNeed {
		return fmt.Errorf("/boot has %d MiB free, the new kernel needs about %d MiB (%s): %w",
			sc.BootFree>>20, sc.BootNeed>>20, sc.Estimate, ErrNoSpace)
	}
	return fmt.Errorf("%s has %d MiB free, the kernel package needs %d MiB: %w",
		sc.RootPath, sc.RootFree>>20, sc.RootNeed>>20, ErrNoSpace)
}
