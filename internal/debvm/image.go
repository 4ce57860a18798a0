package debvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/internal/kpkg"
)

// image.sh builds the disk; guest/ is copied over its root file system.
//
//go:embed image.sh
var imageScript []byte

//go:embed all:guest
var guestTree embed.FS

// imageFormat changes when what Image builds changes in a way its inputs
// (script, guest tree, kernel) do not show.
const imageFormat = "1"

// ErrNeedRoot is returned (wrapped) by Image when not run as root: the
// build uses loop devices, mount and chroot.
var ErrNeedRoot = errors.New("building the Debian image needs root (loop devices, mount, chroot)")

// ImageOptions configures Image.
type ImageOptions struct {
	// Kernel is the kernel installed in the image and pinned as GRUB's
	// saved default; default: FetchKernels' Old.
	Kernel Kernel
	// Older, if set, is installed too, not the default; default:
	// FetchKernels' Older when Kernel is not set either.
	Older Kernel
	// Progress receives the build's output (mmdebstrap, grub); default
	// discarded. A failed build's error carries its last lines anyway.
	Progress io.Writer
}

// ImageInfo describes a built base image.
type ImageInfo struct {
	Key      string        // hash of the inputs; the cache folder's name
	Kernel   Kernel        // installed and pinned as the default
	Older    Kernel        // installed too, if set
	RootUUID string        // the root file system's UUID (root=UUID= in grub.cfg)
	Default  string        // GRUB's saved_entry, Debian's submenu path to Kernel
	Packages []string      // "name version" of every installed package
	Built    time.Time     // when it was built
	BuildFor time.Duration // how long the build took
	Cached   bool          // Image found it built already
}

// Image returns the base image, a qcow2 of Debian 12 (bookworm) with
// systemd, apt, GRUB on the disk's MBR and opts.Kernel, building it once
// into <cacheDir>/debvm/image-<key>/base.qcow2. The key hashes the build
// script, the guest files and the kernel package, so a change to any of
// them builds a new image. Concurrent callers (test processes) wait on a
// file lock while one builds. Hosts never write to it: Boot puts a
// copy-on-write overlay on top.
func Image(ctx context.Context, cacheDir string, opts ImageOptions) (string, ImageInfo, error) {
	if opts.Kernel.Deb == "" {
		ks, err := FetchKernels(ctx, cacheDir)
		if err != nil {
			return "", ImageInfo{}, err
		}
		opts.Kernel, opts.Older = ks.Old, ks.Older
	}
	for _, k := range []Kernel{opts.Kernel, opts.Older} {
		if k.Deb != "" && !exists(k.Deb) {
			return "", ImageInfo{}, fmt.Errorf("debvm: kernel package %q: no such file", k.Deb)
		}
	}
	if opts.Kernel.Deb == "" {
		return "", ImageInfo{}, errors.New("debvm: no kernel package for the image")
	}
	key, err := imageKey(opts.Kernel, opts.Older)
	if err != nil {
		return "", ImageInfo{}, err
	}
	dir := filepath.Join(cacheDir, "debvm", "image-"+key)
	out := filepath.Join(dir, "base.qcow2")
	infoPath := filepath.Join(dir, "image.json")
	load := func() (ImageInfo, bool) {
		var info ImageInfo
		b, err := os.ReadFile(infoPath)
		if err != nil || json.Unmarshal(b, &info) != nil || !exists(out) {
			return ImageInfo{}, false
		}
		info.Cached = true
		return info, true
	}
	if info, ok := load(); ok {
		return out, info, nil
	}
	unlock, err := kpkg.Lock(ctx, filepath.Join(cacheDir, "debvm", "image.lock"))
	if err != nil {
		return "", ImageInfo{}, err
	}
	defer unlock()
	if info, ok := load(); ok {
		return out, info, nil
	}
	if os.Geteuid() != 0 {
		return "", ImageInfo{}, ErrNeedRoot
	}
	for _, tool := range buildTools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", ImageInfo{}, fmt.Errorf("debvm: %s not found: install %s (make deps)", tool, toolPackage(tool))
		}
	}
	start := time.Now()
	work := dir + ".work"
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", ImageInfo{}, err
	}
	defer os.RemoveAll(work)
	guest := filepath.Join(work, "guest")
	if err := writeGuestTree(guest); err != nil {
		return "", ImageInfo{}, err
	}
	script := filepath.Join(work, "image.sh")
	if err := os.WriteFile(script, imageScript, 0o755); err != nil {
		return "", ImageInfo{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", ImageInfo{}, err
	}
	var tail tailBuffer
	w := io.Writer(&tail)
	if opts.Progress != nil {
		w = io.MultiWriter(&tail, opts.Progress)
	}
	cmd := exec.CommandContext(ctx, "/bin/bash", script)
	cmd.Env = append(os.Environ(),
		"OUT="+out, "WORK="+work, "GUEST="+guest,
		"KERNEL_DEB="+opts.Kernel.Deb, "KERNEL_ABI="+opts.Kernel.ABI, "OLDER_DEB="+opts.Older.Deb)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", ImageInfo{}, fmt.Errorf("debvm: build image: %w; last output:\n%s", err, tail.String())
	}
	uuid, err := os.ReadFile(filepath.Join(work, "uuid"))
	if err != nil {
		return "", ImageInfo{}, err
	}
	pkgs, err := os.ReadFile(filepath.Join(work, "packages"))
	if err != nil {
		return "", ImageInfo{}, err
	}
	info := ImageInfo{
		Key: key, Kernel: opts.Kernel, Older: opts.Older, RootUUID: strings.TrimSpace(string(uuid)),
		Packages: strings.Split(strings.TrimSpace(string(pkgs)), "\n"),
		Built:    time.Now(), BuildFor: time.Since(start),
	}
	info.Default = DefaultEntry(info.RootUUID, opts.Kernel.ABI)
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := atomicfile.Write(infoPath, append(b, '\n'), 0o644); err != nil {
		return "", ImageInfo{}, err
	}
	return out, info, nil
}

// DefaultEntry returns the GRUB entry path Debian's grub.cfg gives the
// kernel abi on the root file system uuid, inside the "Advanced options"
// submenu: the form grub-set-default and grub-reboot take.
func DefaultEntry(uuid, abi string) string {
	return "gnulinux-advanced-" + uuid + ">gnulinux-" + abi + "-advanced-" + uuid
}

// buildTools are the host commands image.sh runs.
var buildTools = []string{"mmdebstrap", "sfdisk", "losetup", "partx", "mkfs.ext4", "blkid", "qemu-img", "chroot", "mount"}

func toolPackage(tool string) string {
	switch tool {
	case "sfdisk":
		return "fdisk"
	case "qemu-img":
		return "qemu-utils"
	case "mkfs.ext4":
		return "e2fsprogs"
	case "mmdebstrap":
		return "mmdebstrap"
	}
	return "util-linux"
}

func imageKey(k, older Kernel) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "debvm image %s\n", imageFormat)
	h.Write(imageScript)
	err := fs.WalkDir(guestTree, "guest", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := guestTree.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, k := range []Kernel{k, older} {
		if k.Deb == "" {
			continue
		}
		fi, err := os.Stat(k.Deb)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "kernel %s %s %s %d\n", k.ABI, k.Version, filepath.Base(k.Deb), fi.Size())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// writeGuestTree writes the embedded guest files under dir; scripts (under
// sbin/ or hooks/) are made executable, as embed keeps no modes.
func writeGuestTree(dir string) error {
	return fs.WalkDir(guestTree, "guest", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(path, "guest"), "/")
		target := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := guestTree.ReadFile(path)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.Contains(rel, "/sbin/") || strings.Contains(rel, "/hooks/") || bytes.HasPrefix(b, []byte("#!")) {
			mode = 0o755
		}
		return os.WriteFile(target, b, mode)
	})
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-8<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
