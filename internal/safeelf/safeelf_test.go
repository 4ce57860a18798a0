package safeelf

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

//go:generate sh -c "gcc -g -O2 -fdebug-prefix-map=$(pwd)=. -c -o testdata/small.o testdata/small.c"

// panicAt is a file whose reads that cover byte at panic, as debug/elf
// does on some malformed input.
type panicAt struct {
	r  io.ReaderAt
	at int64
}

func (p panicAt) ReadAt(b []byte, off int64) (int, error) {
	if off <= p.at && p.at < off+int64(len(b)) {
		panic("boom")
	}
	return p.r.ReadAt(b, off)
}

const smallObj = "testdata/small.o"

// small returns testdata/small.o: a relocatable object with symbols,
// relocations and DWARF.
func small(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(smallObj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewFilePanic(t *testing.T) {
	data := small(t)
	_, err := NewFile("kernel.ko", panicAt{bytes.NewReader(data), int64(len(data)) - 1}) // the last section header
	fe, ok := errors.AsType[*FormatError](err)
	if !ok {
		t.Fatalf("NewFile(panicking reader) = %v, want a *FormatError", err)
	}
	pe, ok := errors.AsType[*PanicError](err)
	if !ok || pe.Value != "boom" || !strings.Contains(pe.Stack, "panicAt") {
		t.Errorf("NewFile(panicking reader) panic = %+v, want boom with the stack of panicAt.ReadAt", pe)
	}
	if fe.File != "kernel.ko" || fe.Offset < 64 || fe.Offset >= int64(len(data)) {
		t.Errorf("NewFile(panicking reader) = file %q offset %d, want kernel.ko at a section header", fe.File, fe.Offset)
	}
	if !errors.Is(err, ErrFormat) {
		t.Errorf("NewFile(panicking reader) = %v, want it to wrap ErrFormat", err)
	}
	if want := "kernel.ko: malformed ELF at offset "; !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "reader panic: boom") {
		t.Errorf("NewFile(panicking reader) = %q, want %q...reader panic: boom", err, want)
	}
}

func TestNewFileNotELF(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"script", []byte("#!/bin/sh\necho hi\n")},
		{"empty", nil},
		{"truncated", small(t)[:40]},
	} {
		_, err := NewBytes("x.o", tc.data)
		fe, ok := errors.AsType[*FormatError](err)
		if !ok || fe.File != "x.o" || fe.Offset != -1 || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: NewBytes = %v, want a *FormatError naming x.o", tc.name, err)
		}
		if _, ok := errors.AsType[*PanicError](err); ok {
			t.Errorf("%s: NewBytes = %v, want debug/elf's error, not a panic", tc.name, err)
		}
		if _, ok := errors.AsType[*elf.FormatError](err); !ok && tc.name == "script" {
			t.Errorf("%s: NewBytes = %v, want it to wrap debug/elf's *FormatError", tc.name, err)
		}
	}
	_, err := NewBytes("", nil)
	if got := err.Error(); !strings.HasPrefix(got, "malformed ELF: ") {
		t.Errorf("NewBytes(\"\", nil) = %q, want it to start with \"malformed ELF: \" (no file name)", got)
	}
}

func TestSectionDataPanic(t *testing.T) {
	data := small(t)
	plain, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	text := plain.Section(".text")
	if text == nil {
		t.Fatal("test binary has no .text")
	}
	// The reader panics only when the first byte of .text is read.
	f, err := NewFile("small.o", panicAt{bytes.NewReader(data), int64(text.Offset)})
	if err != nil {
		t.Fatalf("NewFile = %v", err)
	}
	_, err = f.SectionData(f.Section(".text"))
	fe, ok := errors.AsType[*FormatError](err)
	if !ok || fe.Offset != int64(text.Offset) {
		t.Fatalf("SectionData(.text) = %v, want a *FormatError at offset %#x", err, text.Offset)
	}
	if _, ok := errors.AsType[*PanicError](err); !ok {
		t.Errorf("SectionData(.text) = %v, want a recovered panic", err)
	}
	// Reading what lies before works.
	if b, err := f.SectionData(f.Section(".shstrtab")); err != nil || len(b) == 0 {
		t.Errorf("SectionData(.shstrtab) = %d bytes, %v", len(b), err)
	}
}

func TestOpen(t *testing.T) {
	exe := smallObj
	f, err := Open(exe)
	if err != nil {
		t.Fatalf("Open(%s) = %v", exe, err)
	}
	if f.Name != exe || f.Section(".text") == nil {
		t.Errorf("Open(%s) = name %q, want the path and a .text section", exe, f.Name)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := Open(exe + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
	notELF := t.TempDir() + "/script"
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	if _, err := Open(notELF); err == nil || !strings.HasPrefix(err.Error(), notELF+": malformed ELF") {
		t.Errorf("Open(script) = %v, want it to name %s", err, notELF)
	}
}

func TestDo(t *testing.T) {
	f, err := NewBytes("bin", small(t))
	if err != nil {
		t.Fatal(err)
	}
	want := errors.New("mine")
	if err := f.Do(func() error { return want }); err != want {
		t.Errorf("Do(returns mine) = %v, want mine as it is", err)
	}
	err = f.Do(func() error {
		var s []int
		_ = s[3]
		return nil
	})
	fe, ok := errors.AsType[*FormatError](err)
	if !ok || fe.File != "bin" || !strings.Contains(err.Error(), "index out of range") {
		t.Errorf("Do(panics) = %v, want a *FormatError naming bin and the panic", err)
	}
	if err := Do("vmlinux", func() error { panic("x") }); err == nil || err.Error() != "vmlinux: malformed ELF: reader panic: x" {
		t.Errorf("Do(vmlinux, panics) = %v", err)
	}
	// A DWARF walk inside Do.
	dw, err := f.DWARF()
	if err != nil {
		t.Fatalf("DWARF() = %v", err)
	}
	n := 0
	if err := f.Do(func() error {
		r := dw.Reader()
		for e, err := r.Next(); e != nil && err == nil && n < 100; e, err = r.Next() {
			n++
		}
		return nil
	}); err != nil || n == 0 {
		t.Errorf("DWARF walk = %d entries, %v", n, err)
	}
}

// FuzzNewBytes: no input makes the readers panic out of this package.
func FuzzNewBytes(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	if b, err := os.ReadFile(smallObj); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := NewBytes("fuzz", data)
		if err != nil {
			if _, ok := errors.AsType[*FormatError](err); !ok {
				t.Fatalf("NewBytes = %T %v, want a *FormatError", err, err)
			}
			return
		}
		for _, s := range ef.Sections {
			if s.Size < 1<<20 {
				ef.SectionData(s)
			}
		}
		ef.Do(func() error { _, err := ef.File.Symbols(); return err })
		if dw, err := ef.DWARF(); err == nil {
			ef.Do(func() error {
				r := dw.Reader()
				for e, err := r.Next(); e != nil && err == nil; e, err = r.Next() {
				}
				return nil
			})
		}
	})
}
