// Package fakesys builds fake /proc and /sys trees for unit tests of the
// runtime: a kernel's livepatch sysfs in the shapes different kernels use,
// tasks with patch_state, and the identity files kinfo reads. It is for
// fast tests beside the real-kernel tests under QEMU, never instead.
package fakesys

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Shape selects which livepatch sysfs files a fake kernel has.
type Shape int

const (
	// Old is a 4.x/5.x kernel: enabled, transition, signal, force.
	Old Shape = iota
	// V61 is Linux 6.1: enabled, transition, force; objects have patched.
	V61
	// New is a 6.x kernel after 6.1: adds replace and stack_order.
	New
)

// Tree is a fake filesystem root.
type Tree struct {
	Root  string
	Shape Shape
	t     testing.TB
}

// NewTree makes a fake root for a Debian 6.1 kernel with livepatch support.
func NewTree(t testing.TB, shape Shape) *Tree {
	tr := &Tree{Root: t.TempDir(), Shape: shape, t: t}
	tr.Write("proc/sys/kernel/osrelease", "6.1.0-56-amd64\n")
	tr.Write("proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)\n")
	tr.Write("proc/version", "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)\n")
	tr.Write("proc/sys/kernel/random/boot_id", "0b4e5f0e-3c1d-4f7a-9d62-1f2e3d4c5b6a\n")
	tr.Write("proc/sys/kernel/tainted", "0\n")
	tr.Write("proc/sys/kernel/hostname", "web-1\n")
	tr.Write("proc/modules", "")
	tr.Write("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n")
	tr.Mkdir("sys/kernel/livepatch")
	return tr
}

// Write writes a file under the root, creating folders.
func (tr *Tree) Write(rel, content string) {
	tr.t.Helper()
	p := filepath.Join(tr.Root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	// Write through a rename so concurrent readers never see a half file,
	// as with real sysfs attributes.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		tr.t.Fatal(err)
	}
}

// Read reads a file under the root.
func (tr *Tree) Read(rel string) string {
	b, err := os.ReadFile(filepath.Join(tr.Root, rel))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Mkdir makes a folder under the root.
func (tr *Tree) Mkdir(rel string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Join(tr.Root, rel), 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

// Func names a patched function in AddPatch.
type Func struct{ Object, Name string }

// AddPatch registers a live patch in the fake sysfs, as the kernel does
// when a livepatch module's init calls klp_enable_patch.
func (tr *Tree) AddPatch(name string, enabled, transition, replace bool, stackOrder int, funcs ...Func) {
	dir := "sys/kernel/livepatch/" + name + "/"
	tr.Write(dir+"enabled", b01(enabled))
	tr.Write(dir+"transition", b01(transition))
	tr.Write(dir+"force", "")
	switch tr.Shape {
	case Old:
		tr.Write(dir+"signal", "")
	case New:
		tr.Write(dir+"replace", b01(replace))
		tr.Write(dir+"stack_order", fmt.Sprint(stackOrder))
	}
	for _, f := range funcs {
		tr.Mkdir(dir + f.Object + "/" + f.Name + ",0")
		if tr.Shape != Old {
			tr.Write(dir+f.Object+"/patched", "1")
		}
	}
}

// RemovePatch removes a patch from sysfs, as the kernel does when it frees
// a disabled or replaced patch.
func (tr *Tree) RemovePatch(name string) {
	os.RemoveAll(filepath.Join(tr.Root, "sys/kernel/livepatch", name))
}

// AddTask adds a task with a patch_state and kernel stack.
func (tr *Tree) AddTask(pid int, comm string, state int, stack ...string) {
	dir := fmt.Sprintf("proc/%d/task/%d/", pid, pid)
	tr.Write(dir+"patch_state", fmt.Sprint(state))
	tr.Write(dir+"comm", comm+"\n")
	var b strings.Builder
	for _, s := range stack {
		fmt.Fprintf(&b, "[<0>] %s\n", s)
	}
	tr.Write(dir+"stack", b.String())
}

// SetModules writes /proc/modules: module name -> taint letters ("OEK"
// for an unsigned out-of-tree live patch, "" for an ordinary module).
func (tr *Tree) SetModules(mods map[string]string) {
	names := make([]string, 0, len(mods))
	for n := range mods {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s 16384 0 - Live 0xffffffffc0000000", n)
		if t := mods[n]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
		b.WriteString("\n")
	}
	tr.Write("proc/modules", b.String())
}

func b01(v bool) string {
	if v {
		return "1"
	}
	return "0"
}
