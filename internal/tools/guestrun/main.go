// Command guestrun is vmtest's command runner inside a QEMU guest. The
// guest's /init starts it on the control channel, a virtio-serial port
// named by -port (or a tty given by -dev, switched to raw mode), and it
// serves wire.Requests from the host: run a command, write a file, read a
// file, power off. It is built statically (CGO_ENABLED=0) and placed in the
// initramfs as /sbin/guestrun.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stent-dev/stent/internal/vmtest/wire"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "guestrun:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("guestrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	portName := fs.String("port", "", "name of the virtio-serial control port")
	dev := fs.String("dev", "", "control device (a tty is switched to raw mode)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *portName != "" {
		p, err := findPort(*portName, 10*time.Second)
		if err != nil {
			return err
		}
		*dev = p
	}
	if *dev == "" {
		return errors.New("need -port or -dev")
	}
	port, err := os.OpenFile(*dev, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer port.Close()
	if _, err := unix.IoctlGetTermios(int(port.Fd()), unix.TCGETS); err == nil {
		if err := makeRaw(int(port.Fd())); err != nil {
			return fmt.Errorf("raw mode on %s: %w", *dev, err)
		}
	}
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	s := &server{w: port, bootID: strings.TrimSpace(string(bootID))}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	s.send(wire.Response{Ready: true, Uname: unix.ByteSliceToString(uts.Release[:]), BootID: s.bootID})

	r := bufio.NewReaderSize(port, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("read %s: %w", *dev, err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var req wire.Request
		if err := json.Unmarshal(line, &req); err != nil {
			fmt.Fprintf(stderr, "guestrun: bad request (%v): %.200q\n", err, line)
			continue
		}
		go s.handle(req)
	}
}

// findPort returns the /dev node of the virtio-serial port called name,
// waiting for the driver to create it.
func findPort(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %q after %v (is virtio_console loaded?)", name, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// makeRaw puts the tty in raw mode (like cfmakeraw(3)): no echo, no line
// editing, no CR/NL translation, no flow control, 8-bit clean.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS
	t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

type server struct {
	mu     sync.Mutex
	w      io.Writer
	bootID string
}

func (s *server) send(resp wire.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(wire.Response{ID: resp.ID, Error: "marshal response: " + err.Error()})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Write(append(b, '\n'))
}

func (s *server) handle(req wire.Request) {
	var resp wire.Response
	if req.BootID != "" && req.BootID != s.bootID {
		resp.ID = req.ID
		resp.Error = fmt.Sprintf("request for boot %s refused: the guest rebooted (now boot %s)", req.BootID, s.bootID)
		s.send(resp)
		return
	}
	switch req.Op {
	case wire.OpRun:
		resp = runCommand(req)
	case wire.OpWrite:
		if err := writeFile(req.Path, req.Data, req.Mode); err != nil {
			resp.Error = err.Error()
		}
	case wire.OpRead:
		b, err := os.ReadFile(req.Path)
		if err != nil {
			resp.Error = err.Error()
		}
		resp.Data = b
	case wire.OpPoweroff:
		unix.Sync()
		_ = unix.Unmount("/var/lib/stent", 0)
		unix.Sync()
		resp.ID = req.ID
		s.send(resp)
		time.Sleep(100 * time.Millisecond) // let the answer leave the UART
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		return
	default:
		resp.Error = fmt.Sprintf("unknown op %q", req.Op)
	}
	resp.ID = req.ID
	s.send(resp)
}

const defaultTimeout = 5 * time.Minute

var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TERM=dumb",
	"LANG=C",
}

// runCommand runs req.Argv in its own process group. Output goes to files in
// /tmp, not pipes, so that a background child that keeps the descriptors
// open does not hold up the answer.
func runCommand(req wire.Request) wire.Response {
	var resp wire.Response
	if len(req.Argv) == 0 {
		resp.Error = "run: empty argv"
		return resp
	}
	timeout := defaultTimeout
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	stdout, err := os.CreateTemp("", "guestrun-out-")
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	defer os.Remove(stdout.Name())
	defer stdout.Close()
	stderr, err := os.CreateTemp("", "guestrun-err-")
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	defer os.Remove(stderr.Name())
	defer stderr.Close()

	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Env = append(append([]string(nil), baseEnv...), req.Env...)
	cmd.Dir = req.Dir
	cmd.Stdin = bytes.NewReader(req.Stdin)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err = cmd.Run()
	resp.DurationNS = time.Since(start).Nanoseconds()
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			resp.MaxRSSKB = ru.Maxrss // kilobytes on Linux; includes reaped descendants
		}
	}
	resp.TimedOut = ctx.Err() != nil
	resp.Stdout, _ = os.ReadFile(stdout.Name())
	resp.Stderr, _ = os.ReadFile(stderr.Name())

	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		resp.Exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			resp.Exit = 128 + int(ws.Signal())
		}
	default:
		resp.Exit = -1
		resp.Error = err.Error()
	}
	if resp.TimedOut {
		resp.Error = fmt.Sprintf("%s: timed out after %v", strings.Join(req.Argv, " "), timeout)
	}
	return resp
}

// writeFile writes data to path atomically, creating its folder, or in
// place for files under /sys and /proc.
func writeFile(path string, data []byte, mode uint32) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("write %q: path must be absolute", path)
	}
	perm := os.FileMode(mode) & os.ModePerm
	if perm == 0 {
		perm = 0o644
	}
	if strings.HasPrefix(path, "/sys/") || strings.HasPrefix(path, "/proc/") {
		// Kernel attribute files take one write in place.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".guestrun-tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil { // WriteFile's perm is masked by umask
		return err
	}
	return os.Rename(tmp, path)
}
