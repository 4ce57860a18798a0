package klp

import (
	"io/fs"
	"os"
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
