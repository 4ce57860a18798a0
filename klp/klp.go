// Package klp reads and drives the kernel's livepatch sysfs interface
// (/sys/kernel/livepatch, Documentation/ABI/testing/sysfs-kernel-livepatch)
// and the per-task transition state in /proc/<pid>/task/<tid>/patch_state.
//
// The files differ between kernels: 4.x-5.x kernels have a "signal" file,
// 6.1 has enabled, transition and force, newer kernels add replace and
// stack_order, and per-object "patched" files came later than objects. The
// readers here report what exists and never assume a file is there.
package klp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// ErrNotSupported means the kernel has no /sys/kernel/livepatch.
var ErrNotSupported = errors.New("kernel has no live patching support (/sys/kernel/livepatch missing)")

// ErrNoPatch means no live patch of that name is registered.
var ErrNoPatch = errors.New("no such live patch")

// sysDir is the livepatch sysfs folder relative to the filesystem root.
const sysDir = "sys/kernel/livepatch"

// Patch is one registered live patch, as sysfs shows it.
type Patch struct {
	Name       string   `json:"name"`
	Enabled    bool     `json:"enabled"`
	Transition bool     `json:"transition"`
	Replace    *bool    `json:"replace,omitempty"`     // nil: kernel does not expose it
	StackOrder *int     `json:"stack_order,omitempty"` // nil: kernel does not expose it
	Controls   []string `json:"controls"`              // writable control files present: force, signal
	Objects    []Object `json:"objects"`
}

// Object is a patched object: "vmlinux" or a module name.
type Object struct {
	Name string `json:"name"`
	// Patched is nil when the kernel has no per-object patched file; then
	// the object is patched exactly when its module is loaded (or it is
	// vmlinux) and the patch is enabled.
	Patched *bool  `json:"patched,omitempty"`
	Funcs   []Func `json:"functions"`
}

// Func is a patched function; Sympos tells which of several same-named
// local symbols it is (0 or 1 when the name is unique).
type Func struct {
	Name   string `json:"name"`
	Sympos int    `json:"sympos"`
}

// HasControl reports whether the patch's sysfs folder has the control file.
func (p *Patch) HasControl(name string) bool {
	for _, c := range p.Controls {
		if c == name {
			return true
		}
	}
	return false
}

// Supported reports whether root has the livepatch sysfs folder.
func Supported(root string) bool {
	_, err := os.Stat(filepath.Join(root, sysDir))
	return err == nil
}

// List returns every registered live patch, sorted by stack order when the
// kernel tells it and by name otherwise.
func List(root string) ([]Patch, error) {
	ents, err := os.ReadDir(filepath.Join(root, sysDir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotSupported
		}
		return nil, fmt.Errorf("list live patches: %w", err)
	}
	patches := []Patch{}
	for _, e := range ents {
		p, err := Get(root, e.Name())
		if errors.Is(err, ErrNoPatch) {
			continue // freed while we read
		}
		if err != nil {
			return nil, err
		}
		patches = append(patches, *p)
	}
	sort.SliceStable(patches, func(i, j int) bool {
		a, b := patches[i].StackOrder, patches[j].StackOrder
		if a != nil && b != nil && *a != *b {
			return *a < *b
		}
		return patches[i].Name < patches[j].Name
	})
	return patches, nil
}

// Get reads one live patch's sysfs folder.
func Get(root, name string) (*Patch, error) {
	dir := filepath.Join(root, sysDir, name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if vanished(err) {
			if !Supported(root) {
				return nil, ErrNotSupported
			}
			return nil, fmt.Errorf("%s: %w", name, ErrNoPatch)
		}
		return nil, fmt.Errorf("read live patch %s: %w", name, err)
	}
	p := &Patch{Name: name, Controls: []string{}, Objects: []Object{}}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		switch e.Name() {
		case "enabled":
			if p.Enabled, err = readBool(path); err != nil {
				return nil, err
			}
		case "transition":
			if p.Transition, err = readBool(path); err != nil {
				return nil, err
			}
		case "replace":
			v, err := readBool(path)
			if err != nil {
				return nil, err
			}
			p.Replace = &v
		case "stack_order":
			v, err := readInt(path)
			if err != nil {
				return nil, err
			}
			p.StackOrder = &v
		case "force", "signal":
			p.Controls = append(p.Controls, e.Name())
		default:
			if isDir(path) {
				o, err := readObject(path)
				if err != nil {
					return nil, err
				}
				p.Objects = append(p.Objects, *o)
			}
		}
	}
	return p, nil
}

func readObject(dir string) (*Object, error) {
	o := &Object{Name: filepath.Base(dir), Funcs: []Func{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if vanished(err) {
			// The kernel freed the patch while we read it.
			return nil, fmt.Errorf("%s: %w", dir, ErrNoPatch)
		}
		return nil, fmt.Errorf("read live patch object: %w", err)
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		if e.Name() == "patched" && !isDir(path) {
			v, err := readBool(path)
			if err != nil {
				return nil, err
			}
			o.Patched = &v
			continue
		}
		if !isDir(path) {
			continue
		}
		// Function folders are named "<function>,<sympos>".
		name, pos, ok := strings.Cut(e.Name(), ",")
		f := Func{Name: name}
		if ok {
			if f.Sympos, err = strconv.Atoi(pos); err != nil {
				return nil, fmt.Errorf("live patch function folder %s: bad sympos", path)
			}
		}
		o.Funcs = append(o.Funcs, f)
	}
	return o, nil
}

func isDir(path string) bool {
	// sysfs object folders are real directories; Stat follows nothing odd.
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func readBool(path string) (bool, error) {
	v, err := readInt(path)
	return v != 0, err
}

// vanished reports whether err means a sysfs file or folder went away: it
// did not exist when opened (ENOENT), or the kernel removed it between the
// open and the read (ENODEV: kernfs refuses I/O on deactivated nodes; this
// is what a read sees while a freed patch's folder is torn down).
func vanished(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if vanished(err) {
			return 0, fmt.Errorf("%s: %w", path, ErrNoPatch)
		}
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// openControl opens a control file for writing; tests replace it to see
// what the kernel does when a patch's folder goes away.
var openControl = func(path string) (io.WriteCloser, error) { return os.OpenFile(path, os.O_WRONLY, 0) }

// write writes a control value to a patch's sysfs file.
func write(root, name, file, value string) error {
	path := filepath.Join(root, sysDir, name, file)
	f, err := openControl(path)
	if err != nil {
		if errors.Is(err, syscall.ENODEV) {
			// kernfs refuses to open a node removed after the lookup.
			return fmt.Errorf("%s: %w", name, ErrNoPatch)
		}
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(filepath.Join(root, sysDir, name)); serr != nil {
				return fmt.Errorf("%s: %w", name, ErrNoPatch)
			}
			return fmt.Errorf("live patch %s: this kernel has no %s file", name, file)
		}
		return err
	}
	_, err = io.WriteString(f, value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("%s: %w", name, ErrNoPatch) // freed between open and write
	}
	if err != nil {
		return fmt.Errorf("write %s to %s: %w", value, path, err)
	}
	return nil
}

// Disable writes 0 to enabled: starts the unpatching transition or, while
// the patch is still in its patching transition, reverses that transition.
func Disable(root, name string) error { return write(root, name, "enabled", "0") }

// Force writes 1 to force: marks every task as switched and ends the
// transition at once. The kernel then never lets the module be removed.
func Force(root, name string) error { return write(root, name, "force", "1") }

// Signal writes 1 to signal (kernels before 5.x's automatic signalling):
// sends a fake signal to tasks still blocking the transition.
func Signal(root, name string) error { return write(root, name, "signal", "1") }
