package vmtest

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/safeelf"
)

// File is a file to put into the guest's initramfs.
type File struct {
	Path string      // absolute path in the guest
	Data []byte      // contents; if nil, Src is read
	Src  string      // host file to copy when Data is nil
	Mode fs.FileMode // permission bits; 0 means 0644
}

// HostFile returns a File that copies the host file src to guest path dst.
func HostFile(dst, src string) File { return File{Path: dst, Src: src} }

// guestBins holds the static binaries built for the guest, once per process.
var guestBins struct {
	mu   sync.Mutex
	bins map[string][]byte
}

// goBinary builds the Go package pkg (relative to the repository root) as
// a static Linux binary and returns its bytes, building it at most once per
// process (Go's build cache makes the first build quick too).
func goBinary(ctx context.Context, pkg string) ([]byte, error) {
	guestBins.mu.Lock()
	defer guestBins.mu.Unlock()
	if b, ok := guestBins.bins[pkg]; ok {
		return b, nil
	}
	repo, err := kpkg.RepoRoot()
	if err != nil {
		return nil, err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp, err := os.MkdirTemp("", "vmtest-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "./"+pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./%s for the guest: %w\n%s", pkg, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if guestBins.bins == nil {
		guestBins.bins = map[string][]byte{}
	}
	guestBins.bins[pkg] = b
	return b, nil
}

// busybox returns the host's static busybox and its applet paths
// ("bin/ls", "sbin/insmod", ...).
func busybox() (data []byte, applets []string, err error) {
	path, err := exec.LookPath("busybox")
	if err != nil {
		return nil, nil, fmt.Errorf("busybox not found: install busybox-static (make deps)")
	}
	f, err := safeelf.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	static := true
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			static = false
		}
	}
	f.Close()
	if !static {
		return nil, nil, fmt.Errorf("%s is dynamically linked: install busybox-static (make deps)", path)
	}
	list, err := exec.Command(path, "--list-full").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%s --list-full: %w", path, err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return data, strings.Fields(string(list)), nil
}

// initScript is the guest's /init, run by busybox sh as PID 1.
const initScript = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
hostname vmtest
echo "vmtest: init $(uname -r)" > /dev/kmsg
load() {
	for m in $(cat $1); do
		insmod /lib/modules/$(uname -r)/$m || echo "vmtest: insmod $m failed" > /dev/kmsg
	done
}
load /etc/vmtest/modules.boot
if [ -e /etc/vmtest/disk ]; then
	load /etc/vmtest/modules.disk
	mkdir -p /var/lib/stent
	n=0
	while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
	mount -t ext4 /dev/vda /var/lib/stent || echo "vmtest: mount /dev/vda failed" > /dev/kmsg
fi
if [ -e /etc/vmtest/net ]; then
	load /etc/vmtest/modules.net
	n=0
	while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
	ip link set lo up
	ip addr add 10.0.2.15/24 dev eth0
	ip link set eth0 up
	ip route add default via 10.0.2.2
	echo "10.0.2.100 host.vmtest" >> /etc/hosts
fi
echo "vmtest: starting guestrun" > /dev/kmsg
/sbin/guestrun -port vmtest.ctl
echo "vmtest: guestrun exited ($?), powering off" > /dev/kmsg
sync
poweroff -f
`

// baseKey identifies a cached base initramfs.
type baseKey struct {
	release string
	stent   bool
	tools   bool
	modules string
}

var baseArchives struct {
	mu   sync.Mutex
	byID map[baseKey][]byte
}

// baseInitramfs returns the part of the initramfs shared by all VMs of a
// kernel: busybox, guestrun, stent (and stent-tools when asked), /init and
// the image's modules the guest may need (the disk modules and extra, with
// their dependencies). It is built once per process and kernel.
func baseInitramfs(ctx context.Context, k *kpkg.Kernel, withStent, withTools bool, extra []string) ([]byte, error) {
	key := baseKey{k.Release, withStent, withTools, strings.Join(extra, ",")}
	baseArchives.mu.Lock()
	defer baseArchives.mu.Unlock()
	if b, ok := baseArchives.byID[key]; ok {
		return b, nil
	}
	a := newCPIO()
	for _, d := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/proc", "/sys", "/dev", "/run", "/root", "/etc/stent", "/var/lib/stent", "/lib/modules/" + k.Release} {
		a.Dir(d, 0o755)
	}
	a.Dir("/tmp", 0o1777)
	a.CharDev("/dev/console", 0o600, 5, 1)
	a.CharDev("/dev/null", 0o666, 1, 3)
	a.File("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	a.File("/etc/group", []byte("root:x:0:\n"), 0o644)
	a.File("/init", []byte(initScript), 0o755)

	bb, applets, err := busybox()
	if err != nil {
		return nil, err
	}
	a.File("/bin/busybox", bb, 0o755)
	for _, ap := range applets {
		if ap != "bin/busybox" {
			a.Symlink("/"+ap, "/bin/busybox")
		}
	}

	runner, err := goBinary(ctx, "internal/tools/guestrun")
	if err != nil {
		return nil, err
	}
	a.File("/sbin/guestrun", runner, 0o755)
	if withStent {
		stent, err := goBinary(ctx, "cmd/stent")
		if err != nil {
			return nil, err
		}
		a.File("/usr/bin/stent", stent, 0o755)
	}
	if withTools {
		// Where a package puts it; stent finds it there.
		tools, err := goBinary(ctx, "cmd/stent-tools")
		if err != nil {
			return nil, err
		}
		a.File("/usr/lib/stent/stent-tools", tools, 0o755)
	}

	order, dep, err := resolveModules(k.ModulesDir, append(append(append(append([]string(nil), bootModules...), diskModules...), netModules...), extra...))
	if err != nil {
		return nil, err
	}
	modDir := "/lib/modules/" + k.Release
	for _, rel := range order {
		b, err := os.ReadFile(filepath.Join(k.ModulesDir, rel))
		if err != nil {
			return nil, err
		}
		a.File(modDir+"/"+rel, b, 0o644)
	}
	a.File(modDir+"/modules.dep", modulesDep(order, dep), 0o644)
	if b, err := os.ReadFile(k.Config); err == nil { // for tools that check CONFIG_LIVEPATCH
		a.File("/boot/config-"+k.Release, b, 0o644)
	}
	if b, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.builtin")); err == nil {
		a.File(modDir+"/modules.builtin", b, 0o644)
	}
	// /init loads the boot modules, and the disk modules when there is a
	// disk, in these orders (dependencies first).
	bootOrder, _, err := resolveModules(k.ModulesDir, bootModules)
	if err != nil {
		return nil, err
	}
	diskOrder, _, err := resolveModules(k.ModulesDir, append(append([]string(nil), bootModules...), diskModules...))
	if err != nil {
		return nil, err
	}
	netOrder, _, err := resolveModules(k.ModulesDir, append(append([]string(nil), bootModules...), netModules...))
	if err != nil {
		return nil, err
	}
	a.File("/etc/vmtest/modules.boot", []byte(strings.Join(bootOrder, "\n")+"\n"), 0o644)
	a.File("/etc/vmtest/modules.disk", []byte(strings.Join(diskOrder[len(bootOrder):], "\n")+"\n"), 0o644)
	a.File("/etc/vmtest/modules.net", []byte(strings.Join(netOrder[len(bootOrder):], "\n")+"\n"), 0o644)

	b := a.Bytes()
	if baseArchives.byID == nil {
		baseArchives.byID = map[baseKey][]byte{}
	}
	baseArchives.byID[key] = b
	return b, nil
}

// extraInitramfs archives the files a VM asks for.
func extraInitramfs(files []File, disk, net bool) ([]byte, error) {
	a := newCPIO()
	for _, f := range files {
		if !filepath.IsAbs(f.Path) {
			return nil, fmt.Errorf("initramfs file %q: path must be absolute", f.Path)
		}
		data := f.Data
		if data == nil && f.Src != "" {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return nil, fmt.Errorf("initramfs file %s: %w", f.Path, err)
			}
			data = b
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		a.File(f.Path, data, mode)
	}
	if disk {
		a.File("/etc/vmtest/disk", []byte("/dev/vda /var/lib/stent ext4\n"), 0o644)
	}
	if net {
		a.File("/etc/vmtest/net", []byte("10.0.2.15/24\n"), 0o644)
	}
	return a.Bytes(), nil
}

// writeInitramfs writes the concatenated base and extra archives to path.
func writeInitramfs(path string, parts ...[]byte) error {
	return os.WriteFile(path, bytes.Join(parts, nil), 0o644)
}
