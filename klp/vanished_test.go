package klp

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A sysfs file removed between open and read fails with ENODEV, not
// ENOENT: both mean the patch is gone, not that reading sysfs failed.
func TestVanished(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&fs.PathError{Op: "read", Path: "/sys/kernel/livepatch/p/enabled", Err: syscall.ENODEV}, true},
		{&fs.PathError{Op: "open", Path: "/sys/kernel/livepatch/p/enabled", Err: syscall.ENOENT}, true},
		{os.ErrNotExist, true},
		{&fs.PathError{Op: "read", Path: "/sys/kernel/livepatch/p/enabled", Err: syscall.EIO}, false},
		{&fs.PathError{Op: "open", Path: "/sys/kernel/livepatch/p/enabled", Err: syscall.EACCES}, false},
	}
	for _, tt := range tests {
		if got := vanished(tt.err); got != tt.want {
			t.Errorf("vanished(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// A control file whose patch the kernel removed fails to open or to be
// written with ENODEV: Disable and Force then report ErrNoPatch, which
// callers treat as "already gone", not as a failed write.
func TestWriteVanished(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, sysDir, "p")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(f func(string) (io.WriteCloser, error)) { openControl = f }(openControl)
	for _, op := range []string{"open", "write"} {
		openControl = func(path string) (io.WriteCloser, error) {
			if op == "open" {
				return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.ENODEV}
			}
			return failWriter{&fs.PathError{Op: "write", Path: path, Err: syscall.ENODEV}}, nil
		}
		if err := Disable(root, "p"); !errors.Is(err, ErrNoPatch) {
			t.Errorf("Disable with ENODEV on %s = %v, want ErrNoPatch", op, err)
		}
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }
func (w failWriter) Close() error              { return nil }
