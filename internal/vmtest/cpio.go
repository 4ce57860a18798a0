package vmtest

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// cpioArchive writes an archive in the "newc" format (cpio -H newc) that the
// kernel unpacks as an initramfs. Parent folders are added automatically
// before their first entry, since the kernel's unpacker does not create them.
// Archives may be concatenated: the kernel unpacks one after the other, and
// later entries replace earlier ones.
type cpioArchive struct {
	buf  bytes.Buffer
	ino  uint32
	dirs map[string]bool
}

func newCPIO() *cpioArchive { return &cpioArchive{dirs: map[string]bool{"": true, ".": true}} }

const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// cleanName turns an absolute or relative guest path into the archive's
// relative form ("bin/sh").
func cleanName(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func (a *cpioArchive) header(name string, mode uint32, size int, nlink uint32, rmajor, rminor uint32) {
	a.ino++
	fmt.Fprintf(&a.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		a.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	a.buf.WriteString(name)
	a.buf.WriteByte(0)
	a.pad()
}

func (a *cpioArchive) pad() {
	for a.buf.Len()%4 != 0 {
		a.buf.WriteByte(0)
	}
}

func (a *cpioArchive) parents(name string) {
	dir := path.Dir(name)
	if a.dirs[dir] {
		return
	}
	a.parents(dir)
	a.dirs[dir] = true
	a.header(dir, cpioDir|0o755, 0, 2, 0, 0)
}

// Dir adds a folder (and its parents).
func (a *cpioArchive) Dir(p string, perm fs.FileMode) {
	name := cleanName(p)
	if a.dirs[name] {
		return
	}
	a.parents(name)
	a.dirs[name] = true
	a.header(name, cpioDir|uint32(perm.Perm()), 0, 2, 0, 0)
}

// File adds a regular file.
func (a *cpioArchive) File(p string, data []byte, perm fs.FileMode) {
	name := cleanName(p)
	a.parents(name)
	a.header(name, cpioFile|uint32(perm.Perm()), len(data), 1, 0, 0)
	a.buf.Write(data)
	a.pad()
}

// Symlink adds a symbolic link at p pointing to target.
func (a *cpioArchive) Symlink(p, target string) {
	name := cleanName(p)
	a.parents(name)
	a.header(name, cpioSymlink|0o777, len(target), 1, 0, 0)
	a.buf.WriteString(target)
	a.pad()
}

// CharDev adds a character device node.
func (a *cpioArchive) CharDev(p string, perm fs.FileMode, major, minor uint32) {
	name := cleanName(p)
	a.parents(name)
	a.header(name, cpioCharDev|uint32(perm.Perm()), 0, 1, major, minor)
}

// Bytes ends the archive with its trailer and returns it.
func (a *cpioArchive) Bytes() []byte {
	a.header("TRAILER!!!", 0, 0, 1, 0, 0)
	for a.buf.Len()%512 != 0 {
		a.buf.WriteByte(0)
	}
	return a.buf.Bytes()
}
