// Package safeelf reads ELF files with debug/elf without letting its
// panics escape. debug/elf and debug/dwarf are not hardened against
// malformed input (their documentation says so) and may panic on it; Stent
// reads objects, modules and kernels it did not make. Every reader here
// turns such a panic into a *FormatError that names the file and, where
// known, the byte offset that was being read.
//
// It imports only the standard library's ELF and DWARF readers, so the
// host binary may link it.
package safeelf

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
)

// ErrFormat is wrapped by every *FormatError.
var ErrFormat = errors.New("malformed ELF")

// FormatError is a file debug/elf refused or panicked on.
type FormatError struct {
	File   string // the file's path, what the bytes are ("vmlinux"), or "" when the caller's error names it
	Offset int64  // the byte offset being read; -1 when not known
	Err    error  // debug/elf's error, or a *PanicError
}

func (e *FormatError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	b.WriteString(ErrFormat.Error())
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " at offset %#x", e.Offset)
	}
	b.WriteString(": " + e.Err.Error())
	return b.String()
}

func (e *FormatError) Unwrap() []error { return []error{ErrFormat, e.Err} }

// PanicError is a panic recovered from debug/elf or debug/dwarf (or from
// the caller's own code run by Do).
type PanicError struct {
	Value any    // what was passed to panic
	Stack string // the first lines of the panicking goroutine's stack
}

func (e *PanicError) Error() string { return fmt.Sprintf("reader panic: %v", e.Value) }

// File is an ELF file whose reads through the methods below cannot panic.
// The embedded *elf.File's own methods and its sections' methods are not
// guarded: call them inside Do.
type File struct {
	*elf.File
	Name string // as given to NewFile or Open, used in errors

	r      *offsetReader
	closer io.Closer
}

// offsetReader remembers the last offset read, so that a panic can say
// where in the file it happened.
type offsetReader struct {
	r    io.ReaderAt
	last atomic.Int64
}

func (o *offsetReader) ReadAt(p []byte, off int64) (int, error) {
	o.last.Store(off)
	return o.r.ReadAt(p, off)
}

// NewFile reads the ELF header and section headers of r, the contents of
// the file name: a path, what the bytes are ("vmlinux"), or "" when the
// caller's errors name the file.
func NewFile(name string, r io.ReaderAt) (f *File, err error) {
	or := &offsetReader{r: r}
	or.last.Store(-1)
	f = &File{Name: name, r: or}
	err = f.Do(func() error {
		ef, err := elf.NewFile(or)
		if err != nil {
			return &FormatError{File: name, Offset: -1, Err: err}
		}
		f.File = ef
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// NewBytes is NewFile over data held in memory.
func NewBytes(name string, data []byte) (*File, error) {
	return NewFile(name, bytes.NewReader(data))
}

// Open opens the ELF file at path; Close closes it.
func Open(path string) (*File, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	f, err := NewFile(path, osf)
	if err != nil {
		osf.Close()
		return nil, err
	}
	f.closer = osf
	return f, nil
}

// Close closes the file Open opened; it does nothing for NewFile's.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// Do runs fn, which reads f through debug/elf or debug/dwarf (a walk over
// DWARF entries, a section's Data), and turns a panic in it into a
// *FormatError naming f and the offset read last. An error fn returns is
// returned as it is.
func (f *File) Do(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &FormatError{File: f.Name, Offset: f.r.last.Load(), Err: &PanicError{Value: v, Stack: stackTop(debug.Stack(), 14)}}
		}
	}()
	return fn()
}

// Do runs fn, which parses the bytes of the file name with debug/elf or
// with code of its own, and turns a panic in it into a *FormatError
// naming the file. Use File.Do where a *File is at hand: it knows the
// offset.
func Do(name string, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &FormatError{File: name, Offset: -1, Err: &PanicError{Value: v, Stack: stackTop(debug.Stack(), 14)}}
		}
	}()
	return fn()
}

// SectionData returns the contents of s, a section of f.
func (f *File) SectionData(s *elf.Section) (b []byte, err error) {
	err = f.Do(func() error {
		b, err = s.Data()
		if err != nil {
			return &FormatError{File: f.Name, Offset: int64(s.Offset), Err: fmt.Errorf("section %s: %w", s.Name, err)}
		}
		return nil
	})
	return b, err
}

// DWARF returns the DWARF debugging data of f. The *dwarf.Data's readers
// are not guarded: walk them inside Do.
func (f *File) DWARF() (d *dwarf.Data, err error) {
	err = f.Do(func() error {
		d, err = f.File.DWARF()
		if err != nil {
			return &FormatError{File: f.Name, Offset: -1, Err: fmt.Errorf("DWARF: %w", err)}
		}
		return nil
	})
	return d, err
}

// stackTop returns the first n lines of a stack trace.
func stackTop(b []byte, n int) string {
	lines := bytes.SplitN(b, []byte("\n"), n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
