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

// Load loads a module file into the kernel with finit_module(2), falling
// back to init_module(2) on kernels without it (ENOSYS).
func Load(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := load(f, params); err != nil {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

// LoadBytes loads a module from memory. The bytes go into a sealed
// memfd(2) so that what finit_module(2) reads is exactly what the caller
// verified: no file on disk that could be swapped or left behind.
func LoadBytes(name string, data []byte, params string) error {
	fd, err := unix.MemfdCreate("stent:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if errors.Is(err, unix.ENOSYS) {
		if err := unix.InitModule(data, params); err != nil {
			return fmt.Errorf("load module %s: %w", name, explainLoadErr(err))
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
		return fmt.Errorf("load module %s: %w", name, err)
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
	if err != nil {
		return explainLoadErr(err)
	}
	return nil
}

// explainLoadErr adds what the errno usually means for module loading.
func explainLoadErr(err error) error {
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
		why = "another live patch transition is in progress (stent status shows it); wait for it or revert that patch"
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
