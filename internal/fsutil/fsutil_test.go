package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestReadFileMax(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("0123456789"), 0o644)
	if b, err := ReadFileMax(p, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("ReadFileMax(10 bytes, max 10) = %q, %v", b, err)
	}
	if _, err := ReadFileMax(p, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFileMax(10 bytes, max 9) err = %v, want ErrTooLarge", err)
	}
	if _, err := ReadFileMax(dir, 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("ReadFileMax(folder) err = %v, want ErrNotRegular", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err == nil {
		// Opening a FIFO for reading blocks until a writer comes; open one.
		go func() {
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
		}()
		if _, err := ReadFileMax(fifo, 100); !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReadFileMax(fifo) err = %v, want ErrNotRegular", err)
		}
	}
	if _, err := ReadFileMax(filepath.Join(dir, "missing"), 100); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFileMax(missing) err = %v, want ErrNotExist", err)
	}
}
