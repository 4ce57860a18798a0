// Package fsutil reads files from outside input safely: only regular files
// (not a FIFO or a device that never ends), and never more than a limit, so
// a hostile or mistaken path cannot make a reader block or allocate without
// bound.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"os"
)

var (
	// ErrNotRegular: the path is not a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is over the caller's limit.
	ErrTooLarge = errors.New("file too large")
)

// ReadFileMax reads the regular file at path, refusing it before reading
// when it is larger than max bytes, and failing if it grows past max while
// being read. Errors wrap ErrNotRegular or ErrTooLarge where they apply.
func ReadFileMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d: %w", path, fi.Size(), max, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s grew past the limit of %d bytes while read: %w", path, max, ErrTooLarge)
	}
	return data, nil
}
