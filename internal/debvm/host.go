package debvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest/wire"
)

// GuestHost is the address at which a guest reaches the host's forwarded
// ports (Config.Forwards, the apt repository); the guest's /etc/hosts
// names it host.debvm. QEMU's restrict=on user network lets a guest reach
// nothing else, not even 10.0.2.2.
const GuestHost = "10.0.2.100"

// RepoGuestPort is the port of the local apt repository in the guest, and
// RepoSource the guest's only apt source line.
const (
	RepoGuestPort = 8080
	RepoSource    = "deb [trusted=yes] http://10.0.2.100:8080/ ./"
)

// busyboxHost bridges a guest connection to the host's loopback (QEMU
// runs one "busybox nc" per connection), as in vmtest.
const busyboxHost = "/bin/busybox"

// Forward carries guest connections to GuestHost:GuestPort to Host, an
// address on the host's loopback such as "127.0.0.1:8443".
type Forward struct {
	GuestPort int
	Host      string
}

// Config describes one host.
type Config struct {
	Image string // base qcow2 from Image; required
	Name  string // host name (lower-case letters, digits, '-'); required
	Dir   string // where disk.qcow2, config.img and console.log go; required

	// Repo is the host address of the local apt repository ("127.0.0.1:PORT"
	// from ServeRepo), seen by the guest as RepoSource. Empty: no apt source.
	Repo     string
	Forwards []Forward

	Files      []File   // dropped into the guest's file system at every boot, before the network
	Debs       []string // host .deb files installed with dpkg -i at the first boot (after network-online)
	Units      []string // systemd units (e.g. from Files) enabled and started at every boot
	BootScript string   // sh script run at every boot after the Debs and Units; output in /var/log/debvm-boot.log

	CPU         string        // QEMU -cpu model; default DefaultCPU
	MemMB       int           // default 1024
	SMP         int           // default 1
	BootTimeout time.Duration // Boot waits this long for the guest's runner; default 10 minutes
}

// DefaultCPU is the QEMU CPU model of hosts: the x86-64 baseline that
// Debian's amd64 port targets. Under emulation it is cheaper than "max"
// (whose AVX2 and fast-string paths glibc and zstd then take): the same
// kernel install through apt took 158 s of a guest's time against 180 s,
// both guests side by side on the same machine.
var DefaultCPU = "qemu64"

// Host is a running QEMU guest booted from its own overlay disk through
// SeaBIOS and GRUB. QEMU keeps running across guest reboots; only a guest
// power-off or Kill ends it.
type Host struct {
	cfg     Config
	disk    string
	conPath string
	sockDir string
	con     *console
	ctl     *ctl
	conFile *os.File

	cmd     *exec.Cmd
	exited  chan struct{}
	mu      sync.Mutex
	waitErr error
}

// Boot creates the host's overlay disk (a qcow2 backed by cfg.Image) and
// config disk in cfg.Dir, starts QEMU and waits until the guest's command
// runner answers. A second Boot with the same Dir starts from a fresh
// overlay.
func Boot(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Image == "" || cfg.Dir == "" {
		return nil, errors.New("debvm: Config.Image and Config.Dir are required")
	}
	if !hostnameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("debvm: Config.Name %q: want a host name of lower-case letters, digits and '-'", cfg.Name)
	}
	if cfg.MemMB == 0 {
		cfg.MemMB = 1024
	}
	if cfg.CPU == "" {
		cfg.CPU = DefaultCPU
	}
	if cfg.SMP == 0 {
		cfg.SMP = 1
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 10 * time.Minute
	}
	fwds := cfg.Forwards
	if cfg.Repo != "" {
		fwds = append([]Forward{{GuestPort: RepoGuestPort, Host: cfg.Repo}}, fwds...)
	}
	seen := map[int]bool{}
	for _, f := range fwds {
		host, port, err := net.SplitHostPort(f.Host)
		if err != nil || f.GuestPort <= 0 || f.GuestPort > 65535 {
			return nil, fmt.Errorf("debvm: forward %d -> %q: want a guest port and a host:port", f.GuestPort, f.Host)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("debvm: forward to %s: only the host's loopback may be reached from a guest", f.Host)
		}
		if _, err := strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("debvm: forward to %s: bad port", f.Host)
		}
		if seen[f.GuestPort] {
			return nil, fmt.Errorf("debvm: guest port %d forwarded twice (%d is the apt repository's)", f.GuestPort, RepoGuestPort)
		}
		seen[f.GuestPort] = true
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("debvm: %s not found (make deps)", tool)
		}
	}
	if len(fwds) > 0 {
		if _, err := os.Stat(busyboxHost); err != nil {
			return nil, fmt.Errorf("debvm: forwards need %s (Debian package busybox-static): %w", busyboxHost, err)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	base, err := filepath.Abs(cfg.Image)
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, disk: filepath.Join(cfg.Dir, "disk.qcow2"), conPath: filepath.Join(cfg.Dir, "console.log")}
	os.Remove(h.disk)
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", h.disk).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("debvm: overlay disk: %w: %s", err, strings.TrimSpace(string(out)))
	}
	runner, err := guestrunBinary(ctx)
	if err != nil {
		return nil, err
	}
	cfgImg := filepath.Join(cfg.Dir, "config.img")
	if err := writeConfigDisk(ctx, cfgImg, cfg, runner); err != nil {
		return nil, err
	}
	if h.sockDir, err = os.MkdirTemp("", "debvm"); err != nil { // unix socket paths are short
		return nil, err
	}
	if err := h.start(ctx, fwds, cfgImg); err != nil {
		h.Kill()
		return nil, err
	}
	return h, nil
}

func (h *Host) start(ctx context.Context, fwds []Forward, cfgImg string) error {
	conSock, ctlSock := filepath.Join(h.sockDir, "con"), filepath.Join(h.sockDir, "ctl")
	conLn, err := net.Listen("unix", conSock)
	if err != nil {
		return err
	}
	defer conLn.Close()
	ctlLn, err := net.Listen("unix", ctlSock)
	if err != nil {
		return err
	}
	defer ctlLn.Close()
	if h.conFile, err = os.OpenFile(h.conPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return err
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none",
		"-accel", "tcg", "-cpu", h.cfg.CPU,
		"-smp", strconv.Itoa(h.cfg.SMP), "-m", strconv.Itoa(h.cfg.MemMB),
		"-drive", "file=" + h.disk + ",if=virtio,format=qcow2,cache=unsafe",
		"-drive", "file=" + cfgImg + ",if=virtio,format=raw,readonly=on",
		"-chardev", "socket,id=con,path=" + conSock,
		"-serial", "chardev:con",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=ctl,path=" + ctlSock,
		"-device", "virtserialport,bus=vser.0,chardev=ctl,name=vmtest.ctl",
	}
	netdev := "user,id=net0,restrict=on,net=10.0.2.0/24"
	for _, f := range fwds {
		host, port, _ := net.SplitHostPort(f.Host)
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s nc %s %s", GuestHost, f.GuestPort, busyboxHost, host, port)
	}
	args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")

	var stderr strings.Builder
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	h.cmd, h.exited = cmd, make(chan struct{})
	go func() {
		err := cmd.Wait()
		h.mu.Lock()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		h.waitErr = err
		h.mu.Unlock()
		close(h.exited)
	}()
	accept := func(ln net.Listener) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() { c, err := ln.Accept(); ch <- res{c, err} }()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-h.exited:
			return nil, fmt.Errorf("qemu exited at start: %v", h.qemuErr())
		case <-time.After(30 * time.Second):
			return nil, errors.New("qemu did not connect its sockets within 30s")
		}
	}
	// QEMU connects its chardevs in the order given.
	conConn, err := accept(conLn)
	if err != nil {
		return err
	}
	ctlConn, err := accept(ctlLn)
	if err != nil {
		conConn.Close()
		return err
	}
	h.ctl = newCtl(ctlConn)
	h.con = newConsole(h.conFile, func(BootInfo) { h.ctl.down() })
	go h.con.read(conConn)
	go func() { <-h.exited; conConn.Close(); ctlConn.Close() }()

	bctx, cancel := context.WithTimeout(ctx, h.cfg.BootTimeout)
	defer cancel()
	if _, _, err := h.ctl.ready(bctx); err != nil {
		return fmt.Errorf("debvm: boot %s: %w; console:\n%s", h.cfg.Name, err, h.con.tail(40))
	}
	return nil
}

func (h *Host) qemuErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waitErr == nil {
		return errors.New("qemu exited")
	}
	return h.waitErr
}

// ConsolePath returns console.log: every line prefixed by the host's wall
// clock (RFC 3339, microseconds) when QEMU sent it; see ParseConsoleLog.
func (h *Host) ConsolePath() string { return h.conPath }

// Console returns the console lines so far.
func (h *Host) Console() []Line { l, _ := h.con.snapshot(); return l }

// ConsoleTail returns the last n console lines, timestamped, as text.
func (h *Host) ConsoleTail(n int) string { return h.con.tail(n) }

// Boots returns the boots seen on the console so far, oldest first.
func (h *Host) Boots() []BootInfo { _, b := h.con.snapshot(); return b }

// WaitConsole waits up to timeout for a console line matching re, looking
// at every line since the host started, and returns the first match.
func (h *Host) WaitConsole(ctx context.Context, re *regexp.Regexp, timeout time.Duration) (Line, error) {
	return h.WaitConsoleSince(ctx, 0, re, timeout)
}

// WaitConsoleSince is WaitConsole looking only at lines with Index >= since
// (e.g. len(h.Console()) taken before an action).
func (h *Host) WaitConsoleSince(ctx context.Context, since int, re *regexp.Regexp, timeout time.Duration) (Line, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, err := h.con.wait(ctx, since, re)
	if err != nil {
		return l, fmt.Errorf("%s: %w", h.cfg.Name, err)
	}
	return l, nil
}

// WaitBoot waits up to timeout until the console has shown boot number n
// (counting from 1) and that boot's command runner answers, and returns
// the boot.
func (h *Host) WaitBoot(ctx context.Context, n int, timeout time.Duration) (BootInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		boots := h.Boots()
		if len(boots) >= n {
			if _, _, err := h.ctl.ready(ctx); err != nil {
				return BootInfo{}, fmt.Errorf("%s: boot %d: %w; console:\n%s", h.cfg.Name, n, err, h.con.tail(30))
			}
			if len(h.Boots()) == len(boots) { // no newer boot began meanwhile
				return boots[n-1], nil
			}
			continue
		}
		since := 0
		if len(boots) > 0 {
			since = boots[len(boots)-1].Line + 1
		}
		if _, err := h.con.wait(ctx, since, linuxVersionRE); err != nil {
			return BootInfo{}, fmt.Errorf("%s: waiting for boot %d: %w; console:\n%s", h.cfg.Name, n, err, h.con.tail(30))
		}
	}
}

// Result is what a guest command did.
type Result struct {
	Stdout, Stderr string
	Exit           int // 128+n when killed by signal n
	Duration       time.Duration
}

// ExitError is returned by Run and Exec when the command exited non-zero;
// the Result is returned as well.
type ExitError struct {
	Cmd string
	Result
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("guest: %s: exit status %d", e.Cmd, e.Exit)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Run runs a shell script (sh -c) in the guest as root and waits for it.
// It waits for the runner of the current boot when the guest is booting.
// A command that reboots the guest returns ErrRebooted (wrapped) if its
// answer is lost; to reboot, use Reboot or run "systemctl reboot --no-block".
func (h *Host) Run(ctx context.Context, script string) (Result, error) {
	return h.Exec(ctx, []string{"/bin/sh", "-c", script}, nil)
}

// Exec runs argv in the guest with stdin; see Run.
func (h *Host) Exec(ctx context.Context, argv []string, stdin []byte) (Result, error) {
	req := wire.Request{Op: wire.OpRun, Argv: argv, Stdin: stdin}
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMS = max(time.Until(dl)-time.Second, time.Second).Milliseconds()
	} else {
		req.TimeoutMS = (30 * time.Minute).Milliseconds()
	}
	resp, err := h.ctl.do(ctx, req)
	name := strings.Join(argv, " ")
	if len(argv) == 3 && argv[0] == "/bin/sh" {
		name = argv[2]
	}
	if err != nil {
		return Result{}, fmt.Errorf("%s: guest: %s: %w", h.cfg.Name, name, err)
	}
	res := Result{Stdout: string(resp.Stdout), Stderr: string(resp.Stderr), Exit: resp.Exit, Duration: time.Duration(resp.DurationNS)}
	if resp.Error != "" {
		return res, fmt.Errorf("%s: guest: %s: %s", h.cfg.Name, name, resp.Error)
	}
	if res.Exit != 0 {
		return res, &ExitError{Cmd: name, Result: res}
	}
	return res, nil
}

// WriteFile writes a file in the guest (atomically, creating folders).
func (h *Host) WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error {
	resp, err := h.ctl.do(ctx, wire.Request{Op: wire.OpWrite, Path: path, Data: data, Mode: uint32(perm.Perm())})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		return fmt.Errorf("%s: guest: write %s: %w", h.cfg.Name, path, err)
	}
	return nil
}

// Reboot asks systemd for a clean reboot and waits up to timeout for the
// next boot's runner; it returns that boot.
func (h *Host) Reboot(ctx context.Context, timeout time.Duration) (BootInfo, error) {
	n := len(h.Boots())
	if _, err := h.Run(ctx, "systemctl reboot --no-block"); err != nil && !errors.Is(err, ErrRebooted) {
		return BootInfo{}, err
	}
	return h.WaitBoot(ctx, n+1, timeout)
}

// Kill stops QEMU at once (a power cut) and waits for it.
func (h *Host) Kill() {
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
	h.cleanup()
}

func (h *Host) cleanup() {
	if h.sockDir != "" {
		os.RemoveAll(h.sockDir)
	}
}

var guestrunBin struct {
	sync.Mutex
	path string
}

// guestrunBinary builds vmtest's command runner once per process.
func guestrunBinary(ctx context.Context) (string, error) {
	guestrunBin.Lock()
	defer guestrunBin.Unlock()
	if guestrunBin.path != "" {
		return guestrunBin.path, nil
	}
	repo, err := kpkg.RepoRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "debvm-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "guestrun")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "./internal/tools/guestrun")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build guestrun for the guest: %w\n%s", err, msg)
	}
	guestrunBin.path = out
	return out, nil
}
