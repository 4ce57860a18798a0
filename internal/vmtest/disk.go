package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
)

// NewDisk creates a raw disk image of sizeMB megabytes at path holding an
// empty ext4 file system (mkfs.ext4 on the host, no root needed), for
// Options.Disk.
func NewDisk(ctx context.Context, path string, sizeMB int) error {
	if sizeMB <= 0 {
		sizeMB = 64
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create disk: %w", err)
	}
	err = f.Truncate(int64(sizeMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "stent", path).CombinedOutput()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("mkfs.ext4 %s (install e2fsprogs): %w: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}
