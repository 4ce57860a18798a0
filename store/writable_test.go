package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
)

// A data folder SQLite cannot write to is named with the reason, not left
// to SQLite's "unable to open database file (14)" (issue 12, part 9).
func TestOpenReadOnlyFolder(t *testing.T) {
	if os.Getuid() != 0 {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		_, err := Open(context.Background(), filepath.Join(dir, "stent.db"))
		if err == nil || !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), dir+" cannot be written") || !strings.Contains(err.Error(), "give it to the user") {
			t.Fatalf("Open(read-only folder) = %v, want it to name %s, permission denied and what to do", dir, err)
		}
		return
	}
	// Root writes anywhere the file system allows: mount a read-only one.
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "cannot mount a read-only tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	_, err := Open(context.Background(), filepath.Join(dir, "stent.db"))
	if err == nil || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), dir+" cannot be written") || !strings.Contains(err.Error(), "mounted read-only") {
		t.Fatalf("Open(folder on a read-only file system) = %v, want it to name %s and the read-only file system", err, dir)
	}
}

// A database file that exists but cannot be opened for writing is named.
func TestOpenReadOnlyFile(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root opens a mode 0444 file for writing; the folder case covers root")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "stent.db")
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), p); err == nil || !strings.Contains(err.Error(), p+" cannot be opened for writing") {
		t.Fatalf("Open(read-only file) = %v, want it named", err)
	}
}
