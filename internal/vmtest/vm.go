package vmtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
)

// ctlPortName names the virtio-serial port of the control channel; the
// guest finds it in /sys/class/virtio-ports/*/name.
const ctlPortName = "vmtest.ctl"

// Options configures a VM.
type Options struct {
	Kernel *kpkg.Kernel // required

	// Files are added to the initramfs (e.g. built .ko files, bundles, keys
	// under /etc/stent/keys). They are there again after Reboot.
	Files []File

	// Disk is a raw (or, by its .qcow2 suffix, qcow2) ext4 image, e.g. from
	// NewDisk, attached as /dev/vda and mounted at /var/lib/stent.
	Disk string

	MemMB       int           // guest memory; default 512
	SMP         int           // virtual CPUs; default 1
	Append      string        // added to the kernel command line
	Modules     []string      // more of the image's modules to put in the initramfs (loadable with modprobe)
	NoStent     bool          // leave the stent binary out of the initramfs
	StentTools  bool          // add stent-tools (stent agent, inventory, ...): 28 MB more to boot
	BootTimeout time.Duration // until the guest's runner answers; default 2 minutes
	LogDir      string        // where console.log goes; default a new temporary folder

	// Forwards let the guest reach servers on the host's loopback, and
	// nothing else: the guest gets a virtio network card on QEMU's
	// user-mode network with restrict=on, and a connection to
	// 10.0.2.100:GuestPort (also named host.vmtest in the guest's
	// /etc/hosts) is carried to Host by a busybox nc QEMU starts for it.
	Forwards []Forward
}

// Forward carries guest connections to GuestHost:GuestPort to Host, an
// address on the host's loopback such as "127.0.0.1:8443".
type Forward struct {
	GuestPort int
	Host      string
}

// busyboxHost is the host's busybox, used by QEMU to bridge forwards.
const busyboxHost = "/bin/busybox"

// GuestHost is the address the guest connects to for Forwards.
const GuestHost = "10.0.2.100"

// VM is a running QEMU guest.
type VM struct {
	opts    Options
	dir     string // LogDir: console.log, initrd.cpio
	sockDir string // short path for the control socket
	kernel  string // vmlinux or vmlinuz given to -kernel
	initrd  string
	console string

	mu      sync.Mutex
	boots   int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current QEMU process is gone
	waitErr error
	ctl     *client
	closed  bool

	prepTime time.Duration // building the initramfs (and guest binaries)
	bootTime time.Duration // last boot, QEMU start to the runner's greeting
}

// Start boots a VM and waits until its command runner answers.
func Start(ctx context.Context, opts Options) (*VM, error) {
	if opts.Kernel == nil {
		return nil, errors.New("vmtest: Options.Kernel is required")
	}
	if opts.MemMB == 0 {
		opts.MemMB = 512
	}
	if opts.SMP == 0 {
		opts.SMP = 1
	}
	if opts.BootTimeout == 0 {
		opts.BootTimeout = 2 * time.Minute
	}
	if opts.Disk != "" {
		if _, err := os.Stat(opts.Disk); err != nil {
			return nil, fmt.Errorf("vmtest: disk: %w (create it with NewDisk)", err)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, fmt.Errorf("qemu-system-x86_64 not found: install qemu-system-x86 (make deps)")
	}
	vm := &VM{opts: opts, dir: opts.LogDir}
	if vm.dir == "" {
		d, err := os.MkdirTemp("", "vmtest-")
		if err != nil {
			return nil, err
		}
		vm.dir = d
	} else if err := os.MkdirAll(vm.dir, 0o755); err != nil {
		return nil, err
	}
	// Unix socket paths are limited to 107 bytes; t.TempDir() paths can be
	// longer, so the socket gets its own short folder.
	sd, err := os.MkdirTemp("", "vmt")
	if err != nil {
		return nil, err
	}
	vm.sockDir = sd
	prepStart := time.Now()
	vm.kernel = bootImage(ctx, opts.Kernel)
	vm.console = filepath.Join(vm.dir, "console.log")
	vm.initrd = filepath.Join(vm.dir, "initrd.cpio")

	base, err := baseInitramfs(ctx, opts.Kernel, !opts.NoStent, opts.StentTools, opts.Modules)
	if err != nil {
		vm.cleanup()
		return nil, err
	}
	for _, f := range opts.Forwards {
		host, port, err := net.SplitHostPort(f.Host)
		if err != nil || f.GuestPort <= 0 || f.GuestPort > 65535 {
			return nil, fmt.Errorf("vmtest: forward %d -> %q: want a guest port and a host:port", f.GuestPort, f.Host)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("vmtest: forward to %s: only the host's loopback may be reached from a guest", f.Host)
		}
		if _, err := strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("vmtest: forward to %s: bad port", f.Host)
		}
	}
	if len(opts.Forwards) > 0 {
		if _, err := os.Stat(busyboxHost); err != nil {
			return nil, fmt.Errorf("vmtest: forwards need %s on the host (Debian package busybox-static): %w", busyboxHost, err)
		}
	}
	extra, err := extraInitramfs(opts.Files, opts.Disk != "", len(opts.Forwards) > 0)
	if err != nil {
		vm.cleanup()
		return nil, err
	}
	if err := writeInitramfs(vm.initrd, base, extra); err != nil {
		vm.cleanup()
		return nil, err
	}
	vm.prepTime = time.Since(prepStart)
	if err := vm.boot(ctx); err != nil {
		vm.Close()
		return nil, err
	}
	return vm, nil
}

func (vm *VM) qemuArgs(sock string) []string {
	o := vm.opts
	// no_timer_check: on a host so busy that TCG starves, the kernel's
	// IO-APIC timer check fails and it panics at boot ("IO-APIC + timer
	// doesn't work", seen at load 17).
	cmdline := "console=ttyS0 panic=-1 oops=panic loglevel=6 rdinit=/init no_timer_check"
	if o.Append != "" {
		cmdline += " " + o.Append
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", "tcg", "-cpu", "max",
		"-smp", strconv.Itoa(o.SMP), "-m", strconv.Itoa(o.MemMB),
		"-kernel", vm.kernel, "-initrd", vm.initrd, "-append", cmdline,
		"-chardev", "file,id=con,path=" + vm.console + ",append=on",
		"-serial", "chardev:con",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=ctl,path=" + sock,
		"-device", "virtserialport,bus=vser.0,chardev=ctl,name=" + ctlPortName,
	}
	if len(o.Forwards) > 0 {
		netdev := "user,id=net0,restrict=on,net=10.0.2.0/24"
		for _, f := range o.Forwards {
			host, port, _ := net.SplitHostPort(f.Host)
			// One busybox nc per guest connection, bridging it to the host's
			// loopback (QEMU runs the command for each connection).
			netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s nc %s %s", GuestHost, f.GuestPort, busyboxHost, host, port)
		}
		args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")
	}
	if o.Disk != "" {
		format := "raw"
		if strings.HasSuffix(o.Disk, ".qcow2") {
			format = "qcow2"
		}
		args = append(args, "-drive", "file="+o.Disk+",if=virtio,format="+format+",cache=writeback")
	}
	return args
}

// boot starts QEMU and waits for the runner's greeting.
func (vm *VM) boot(ctx context.Context) error {
	vm.mu.Lock()
	vm.boots++
	n := vm.boots
	vm.mu.Unlock()
	if f, err := os.OpenFile(vm.console, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		fmt.Fprintf(f, "\n===== vmtest: boot %d of %s at %s =====\n", n, vm.opts.Kernel.Release, time.Now().Format(time.RFC3339))
		f.Close()
	}

	sock := filepath.Join(vm.sockDir, "ctl"+strconv.Itoa(n))
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on control socket: %w", err)
	}
	defer ln.Close()
	defer os.Remove(sock)

	var stderr strings.Builder
	cmd := exec.Command("qemu-system-x86_64", vm.qemuArgs(sock)...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	exited := make(chan struct{})
	vm.mu.Lock()
	vm.cmd, vm.exited, vm.waitErr = cmd, exited, nil
	vm.mu.Unlock()
	go func() {
		err := cmd.Wait()
		vm.mu.Lock()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		vm.waitErr = err
		vm.mu.Unlock()
		close(exited)
	}()

	deadline := time.Now().Add(vm.opts.BootTimeout)
	bootCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// QEMU connects to the socket as it starts.
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		acc <- accepted{c, err}
	}()
	var conn net.Conn
	select {
	case a := <-acc:
		if a.err != nil {
			return fmt.Errorf("accept control connection: %w", a.err)
		}
		conn = a.c
	case <-exited:
		return fmt.Errorf("qemu exited at start: %v", vm.qemuErr())
	case <-bootCtx.Done():
		return fmt.Errorf("qemu did not connect its control port: %w", bootCtx.Err())
	}
	ctl := newClient(conn, exited)
	vm.mu.Lock()
	vm.ctl = ctl
	vm.mu.Unlock()

	select {
	case <-ctl.ready:
	case <-ctl.done:
		select { // let the QEMU exit status arrive
		case <-exited:
		case <-time.After(2 * time.Second):
		}
		return fmt.Errorf("boot %s: the guest went away before its runner started (%v)\n%s", vm.opts.Kernel.Release, vm.qemuErr(), vm.ConsoleTail(40))
	case <-bootCtx.Done():
		return fmt.Errorf("boot %s: no answer from the guest's runner within %v: %w\n%s", vm.opts.Kernel.Release, vm.opts.BootTimeout, bootCtx.Err(), vm.ConsoleTail(40))
	}
	if ctl.uname != vm.opts.Kernel.Release {
		return fmt.Errorf("boot: guest runs %q, want %q", ctl.uname, vm.opts.Kernel.Release)
	}
	vm.mu.Lock()
	vm.bootTime = time.Since(deadline.Add(-vm.opts.BootTimeout))
	vm.mu.Unlock()
	return nil
}

func (vm *VM) qemuErr() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.waitErr == nil {
		return errors.New("qemu exited")
	}
	return vm.waitErr
}

// client returns the current control connection, or an error when the VM
// is closed or down.
func (vm *VM) client() (*client, error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil, errors.New("vmtest: VM is closed")
	}
	if vm.ctl == nil {
		return nil, errors.New("vmtest: VM is not running")
	}
	return vm.ctl, nil
}

// ErrDown is returned (wrapped) by requests to a guest that has crashed or
// powered off.
var ErrDown = errors.New("guest is down")

// explain adds to a failed request's error the state of QEMU and the end of
// the console when the guest is down: a panic or oops shows there.
func (vm *VM) explain(err error) error {
	vm.mu.Lock()
	exited := vm.exited
	vm.mu.Unlock()
	if exited == nil {
		return err
	}
	select {
	case <-exited:
	case <-time.After(500 * time.Millisecond): // QEMU may be exiting right now
		return err
	}
	return fmt.Errorf("%w: %w (%v); console:\n%s", err, ErrDown, vm.qemuErr(), vm.ConsoleTail(30))
}

// Shutdown powers the guest off cleanly (sync, unmount the disk) and waits
// for QEMU to exit. The VM can be booted again with Reboot.
func (vm *VM) Shutdown(ctx context.Context) error {
	c, err := vm.client()
	if err != nil {
		return err
	}
	vm.mu.Lock()
	exited := vm.exited
	vm.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, _ = c.poweroff(ctx) // the answer may be lost as the guest goes down
	select {
	case <-exited:
	case <-ctx.Done():
		vm.kill()
		return fmt.Errorf("shutdown: guest did not power off: %w", ctx.Err())
	}
	vm.mu.Lock()
	vm.ctl = nil
	vm.mu.Unlock()
	return nil
}

// Reboot powers the guest off cleanly and boots it again with the same
// kernel, initramfs files and disk.
func (vm *VM) Reboot(ctx context.Context) error {
	if err := vm.Shutdown(ctx); err != nil {
		return err
	}
	return vm.boot(ctx)
}

// kill stops QEMU at once and waits for it.
func (vm *VM) kill() {
	vm.mu.Lock()
	cmd, exited := vm.cmd, vm.exited
	vm.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Close stops the VM (cleanly first when it has a disk, so the disk stays
// consistent) and removes its socket. The console log stays in LogDir.
// Close is safe to call more than once.
func (vm *VM) Close() error {
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return nil
	}
	ctl := vm.ctl
	vm.mu.Unlock()
	if ctl != nil && vm.opts.Disk != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = vm.Shutdown(ctx)
		cancel()
	}
	vm.kill()
	vm.mu.Lock()
	vm.closed = true
	vm.ctl = nil
	vm.mu.Unlock()
	vm.cleanup()
	return nil
}

func (vm *VM) cleanup() {
	if vm.sockDir != "" {
		os.RemoveAll(vm.sockDir)
	}
}

// Timings returns how long Start spent preparing the initramfs (building
// the guest binaries the first time in a process) and how long the last
// boot took from starting QEMU to the runner's greeting.
func (vm *VM) Timings() (prep, boot time.Duration) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.prepTime, vm.bootTime
}

// Console returns the kernel console output of all boots so far.
func (vm *VM) Console() string {
	b, _ := os.ReadFile(vm.console)
	return string(b)
}

// ConsoleTail returns the last n lines of the console output.
func (vm *VM) ConsoleTail(n int) string {
	lines := strings.Split(strings.TrimRight(vm.Console(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ConsolePath returns the path of the console log file.
func (vm *VM) ConsolePath() string { return vm.console }
