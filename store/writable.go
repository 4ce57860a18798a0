package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// checkSQLiteWritable tells, before SQLite does with "unable to open
// database file (14)", why the database at path cannot be written: the
// folder that holds it (where SQLite also creates its -wal and -shm files)
// or the file itself is read-only to this user, or on a read-only file
// system. In-memory and URI databases are not checked.
func checkSQLiteWritable(path string) error {
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil
	}
	dir := filepath.Dir(path)
	probe, err := os.CreateTemp(dir, ".stent-write-test-*")
	if err != nil {
		return fmt.Errorf("sqlite database %s: its folder %s cannot be written (SQLite creates the database and its -wal and -shm files there): %w; %s", path, dir, err, writableHint(err, dir))
	}
	probe.Close()
	os.Remove(probe.Name())
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // created at first open
	case err != nil:
		return fmt.Errorf("sqlite database %s cannot be opened for writing: %w; %s", path, err, writableHint(err, path))
	}
	return f.Close()
}

func writableHint(err error, p string) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return "the file system is mounted read-only: choose a --data-dir on a writable one"
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("give it to the user the server runs as (uid %d), e.g. chown -R that user %s, or choose another --data-dir", os.Getuid(), p)
	case errors.Is(err, fs.ErrNotExist):
		return "create it first, or choose another --data-dir"
	}
	return "check its owner, mode and file system"
}
