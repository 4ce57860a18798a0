package flock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Two opens of one file hold separate flock(2) locks, even in one process:
// the tests contend with themselves.

func TestLockWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lock")
	unlock, err := Lock(t.Context(), path, Options{Perm: 0o600})
	if err != nil {
		t.Fatalf("Lock(free) = %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file = %v, %v; want it created with mode 0600", fi, err)
	}
	var waits, holder atomic.Int64
	got := make(chan error, 1)
	go func() {
		u, err := Lock(t.Context(), path, Options{Poll: 5 * time.Millisecond, OnWait: func(pid int) {
			waits.Add(1)
			holder.Store(int64(pid))
		}})
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("Lock(held) returned %v while the lock was held", err)
	default:
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Lock(once free) = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock did not take the lock once it was free")
	}
	if waits.Load() != 1 {
		t.Errorf("OnWait called %d times, want once", waits.Load())
	}
	if _, err := os.Stat("/proc/locks"); err == nil && holder.Load() != int64(os.Getpid()) {
		t.Errorf("OnWait holder = %d, want this process (%d), from /proc/locks", holder.Load(), os.Getpid())
	}
}

func TestLockContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := Lock(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// start before the context: its deadline counts from its making.
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = Lock(ctx, path, Options{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), path) {
		t.Errorf("Lock(held, ctx ends) = %v, want DeadlineExceeded naming %s", err, path)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("Lock(held) gave up after %v, before ctx ended", took)
	}
}

func TestLockErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	// A lock whose folder cannot be made: a file is in the way.
	if _, err := Lock(t.Context(), filepath.Join(file, "lock"), Options{}); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("Lock(under a file) = %v, want an error naming the path", err)
	}
	if _, err := TryLock(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("TryLock(missing) = %v, want ErrNotExist", err)
	}
}

func TestTryLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := TryLock(dir) // a folder, as the server locks its data folder
	if err != nil {
		t.Fatalf("TryLock(free folder) = %v", err)
	}
	if _, err := TryLock(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Errorf("TryLock(held) = %v, want ErrLocked naming %s", err, dir)
	}
	unlock()
	unlock, err = TryLock(dir)
	if err != nil {
		t.Fatalf("TryLock(freed) = %v", err)
	}
	unlock()
}

func TestDescribe(t *testing.T) {
	self := Describe(os.Getpid())
	want := fmt.Sprintf("%s -test.", filepath.Base(os.Args[0]))
	if !strings.HasPrefix(self, want) || !strings.HasSuffix(self, fmt.Sprintf(" (pid %d)", os.Getpid())) || len(self) > 80+len(" (pid )")+10 {
		t.Errorf("Describe(this process) = %q, want %q... (pid %d), cut at 80", self, want, os.Getpid())
	}
	if got := Describe(1 << 30); got != fmt.Sprintf("process %d", 1<<30) {
		t.Errorf("Describe(no such pid) = %q", got)
	}
}

func TestHolderIn(t *testing.T) {
	const locks = `1: FLOCK  ADVISORY  WRITE 30052 fe:00:5310160 0 EOF
1: -> FLOCK  ADVISORY  WRITE 30065 fe:00:5310160 0 EOF
2: OFDLCK ADVISORY  READ -1 fe:00:9978285 201 201
3: POSIX  ADVISORY  WRITE 711 103:02:42 0 EOF
4: FLOCK  ADVISORY  WRITE 712 103:02:42 0 EOF
`
	for _, tc := range []struct {
		dev, ino uint64
		want     int
	}{
		{0xfe00, 5310160, 30052}, // the holder, not the waiter
		{0xfe00, 9978285, 0},     // an OFD lock, not flock
		{0xfe00, 1, 0},
		{0x10302, 42, 712}, // major 259 (0x103): the extended encoding
	} {
		// st_dev encodes major 259 minor 2 as 0x10302 (new_encode_dev).
		if got := holderIn(bufio.NewScanner(strings.NewReader(locks)), tc.dev, tc.ino); got != tc.want {
			t.Errorf("holderIn(dev %#x, ino %d) = %d, want %d", tc.dev, tc.ino, got, tc.want)
		}
	}
}
