package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LoadBytes loads a module from memory. The bytes go into a sealed
// memfd(2) so that what finit_module(2) reads is exactly what the caller
// verified: no file on disk that could be swapped or left behind.
//
// A refused load is explained from the errno and from what the kernel
// logged meanwhile (/dev/kmsg, read from its end before loading).
func LoadBytes(name string, data []byte, params string) error {
	klog := followKernelLog()
	defer klog.close()
	fd, err := unix.MemfdCreate("stent:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if errors.Is(err, unix.ENOSYS) {
		if err := unix.InitModule(data, params); err != nil {
			return fmt.Errorf("load module %s: %w", name, explainLoadErr(err, klog.lines(), ftraceEnabled()))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("load module %s: memfd_create: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("load module %s: write memfd: %w", name, err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return fmt.Errorf("load module %s: seal memfd: %w", name, err)
	}
	if err := load(f, params); err != nil {
		return fmt.Errorf("load module %s: %w", name, explainLoadErr(err, klog.lines(), ftraceEnabled()))
	}
	return nil
}

func load(f *os.File, params string) error {
	err := unix.FinitModule(int(f.Fd()), params, 0)
	if errors.Is(err, unix.ENOSYS) {
		data, rerr := os.ReadFile(f.Name())
		if rerr != nil {
			return rerr
		}
		err = unix.InitModule(data, params)
	}
	return err
}

// ErrCallback is wrapped when a live patch's own pre-patch callback
// refused to load it.
var ErrCallback = errors.New("pre-patch callback refused the live patch")

// ErrFtrace is wrapped when the kernel's ftrace refused to attach a live
// patch to a function it replaces.
var ErrFtrace = errors.New("ftrace refused the live patch")

// explainLoadErr adds what the errno means for module loading. klog holds
// the kernel's log lines since the load began and ftraceOn the contents
// of /proc/sys/kernel/ftrace_enabled ("" when unknown).
//
// EBUSY while a live patch module loads is ftrace's (stent refuses to load
// during another patch's transition before it gets here): livepatch
// registers its ftrace handlers FTRACE_OPS_FL_PERMANENT|IPMODIFY, which
// ftrace refuses with EBUSY when kernel.ftrace_enabled is 0 and when
// another user that modifies the instruction pointer (a kprobe with a
// post handler, a BPF trampoline, a live patch of another tool) already
// hooks the function; livepatch then logs "failed to register ftrace
// handler for function '...' (-16)".
func explainLoadErr(err error, klog []string, ftraceOn string) error {
	// A live patch's pre-patch callback refused: livepatch logs
	// "pre-patch callback failed for object '...'" and the module's init
	// returns the callback's error, whatever it is.
	for _, l := range klog {
		if strings.Contains(l, "pre-patch callback failed") {
			return fmt.Errorf("%w: %w (kernel: %q); the kernel unloaded it and nothing was changed", err, ErrCallback, l)
		}
	}
	var why string
	switch {
	case errors.Is(err, unix.EEXIST):
		why = "a module of that name is already loaded"
	case errors.Is(err, unix.ENOEXEC):
		why = "the kernel rejected the module format (wrong architecture or corrupt file)"
	case errors.Is(err, unix.EKEYREJECTED), errors.Is(err, unix.ENOKEY):
		why = "the kernel requires module signatures and this module's is missing or untrusted"
	case errors.Is(err, unix.EPERM):
		why = "not permitted (needs root; module loading may be disabled or locked down)"
	case errors.Is(err, unix.EINVAL):
		why = "the kernel refused the module (see the kernel log: version magic, symbol or live patch target mismatch)"
	case errors.Is(err, unix.EBUSY):
		var said string
		for _, l := range klog {
			if strings.Contains(l, "ftrace") {
				said = l
				break
			}
		}
		switch {
		case said == "" && ftraceOn != "0":
			why = "the kernel was busy: ftrace refused the patch (another ftrace user redirects one of its functions; the kernel log then says \"failed to register ftrace handler\"), or a live patch transition started outside stent is in progress (stent status shows it)"
			return fmt.Errorf("%w: %s", err, why)
		case ftraceOn == "0":
			why = "kernel.ftrace_enabled is 0, and live patches redirect functions through ftrace: enable it (sysctl kernel.ftrace_enabled=1) and apply again"
		default:
			why = "another ftrace user that redirects the same function (a kprobe, a BPF trampoline, a live patch of another tool) holds it: remove it and apply again"
		}
		if said != "" {
			why += fmt.Sprintf(" (kernel: %q)", said)
		}
		return fmt.Errorf("%w: %w: %s", err, ErrFtrace, why)
	case errors.Is(err, unix.ENOENT):
		why = "a symbol or function the module needs is missing in this kernel (see the kernel log)"
	default:
		return err
	}
	return fmt.Errorf("%w: %s", err, why)
}

// ErrNotLoaded means no module of that name is loaded.
var ErrNotLoaded = errors.New("module not loaded")

// Unload removes a module with delete_module(2), without blocking.
func Unload(name string) error {
	if err := unix.DeleteModule(name, unix.O_NONBLOCK); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unload module %s: %w", name, ErrNotLoaded)
		}
		if errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("unload module %s: %w: it is still in use", name, err)
		}
		return fmt.Errorf("unload module %s: %w", name, err)
	}
	return nil
}

// Module is a loaded module as /proc/modules lists it.
type Module struct {
	Name     string   `json:"name"`
	Size     int      `json:"size"`
	RefCount int      `json:"refcount"`
	UsedBy   []string `json:"used_by,omitempty"`
	State    string   `json:"state"` // Live, Loading, Unloading
	Taint    string   `json:"taint,omitempty"`
}

// Loaded returns the modules in root's /proc/modules.
func Loaded(root string) ([]Module, error) {
	f, err := os.Open(filepath.Join(root, "proc/modules"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Module
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name size refcount deps state address [taint]
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 {
			continue
		}
		m := Module{Name: fs[0], State: fs[4]}
		m.Size, _ = strconv.Atoi(fs[1])
		m.RefCount, _ = strconv.Atoi(fs[2])
		if fs[3] != "-" {
			for _, d := range strings.Split(strings.TrimSuffix(fs[3], ","), ",") {
				m.UsedBy = append(m.UsedBy, d)
			}
		}
		if len(fs) > 6 {
			m.Taint = strings.Trim(fs[6], "()")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// IsLoaded reports whether a module named name is in /proc/modules.
func IsLoaded(root, name string) (bool, error) {
	mods, err := Loaded(root)
	if err != nil {
		return false, err
	}
	for _, m := range mods {
		if m.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// kernelLog follows the kernel's log from the moment it was opened.
type kernelLog struct{ fd int }

// followKernelLog opens /dev/kmsg at its end; nil when it cannot be read
// (not root, no CONFIG_PRINTK): a refused load is then explained from
// its errno alone.
func followKernelLog() *kernelLog {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil
	}
	return &kernelLog{fd: fd}
}

// lines returns the messages logged since followKernelLog, without
// /dev/kmsg's "level,seq,time,flags;" prefix.
func (k *kernelLog) lines() []string {
	if k == nil {
		return nil
	}
	var out []string
	buf := make([]byte, 8192) // a record is at most 1024 bytes of text plus its dictionary
	for range 1000 {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // records overwritten before they were read
		}
		if err != nil || n <= 0 {
			break
		}
		rec, _, _ := strings.Cut(string(buf[:n]), "\n")
		if _, msg, ok := strings.Cut(rec, ";"); ok {
			out = append(out, msg)
		}
	}
	return out
}

func (k *kernelLog) close() {
	if k != nil {
		unix.Close(k.fd)
	}
}

// ftraceEnabled reads the kernel.ftrace_enabled sysctl: "1", "0", or ""
// when it cannot be read.
func ftraceEnabled() string {
	b, err := os.ReadFile("/proc/sys/kernel/ftrace_enabled")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
