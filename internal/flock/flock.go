// Package flock takes exclusive flock(2) locks on files: Lock waits for one
// until a context ends, telling its caller once that it waits and for
// whom; TryLock does not wait. The patcher's runtime lock, the download
// cache's locks and the server's data folder lock all go through it.
//
// It uses package syscall, not golang.org/x/sys/unix, so the packages that
// must not link x/sys/unix (server, build; see the dependency guard) may
// use it.
package flock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrLocked means another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Options tune Lock.
type Options struct {
	// Perm is the lock file's mode when Lock creates it; 0 means 0o644.
	Perm os.FileMode
	// OnWait, when not nil, is called once, the first time the lock is
	// found held, with the process holding it (0 when not known): the
	// caller says what it waits for.
	OnWait func(holder int)
	// Poll is how often the lock is tried again; 0 means 50ms.
	Poll time.Duration
}

// Lock takes an exclusive lock on the file path, creating it and its
// folder if needed, and returns the function that releases it (it closes
// the file, which drops the lock). While another process holds the lock
// it waits, until the lock is free or ctx is done; then the error wraps
// ctx.Err().
func Lock(ctx context.Context, path string, opts Options) (unlock func(), err error) {
	if opts.Perm == 0 {
		opts.Perm = 0o644
	}
	if opts.Poll <= 0 {
		opts.Poll = 50 * time.Millisecond
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, opts.Perm)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	told := false
	for {
		err := flock(f)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, ErrLocked) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told && opts.OnWait != nil {
			opts.OnWait(Holder(path))
		}
		told = true
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(opts.Poll):
		}
	}
}

// TryLock takes an exclusive lock on path, a file or a folder that
// exists, without waiting: when another process holds it the error wraps
// ErrLocked. The returned function releases it.
func TryLock(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// flock tries flock(LOCK_EX|LOCK_NB) on f, again when a signal interrupts
// it; a lock held elsewhere is ErrLocked.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrLocked
		default:
			return err
		}
	}
}

// Holder returns the process holding a flock(2) lock on path, from
// /proc/locks, or 0 when none is listed or it cannot be told (the holder
// in another PID namespace, /proc not mounted).
func Holder(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	return holderIn(bufio.NewScanner(f), uint64(st.Dev), st.Ino)
}

// Describe names process pid for a person: its command line, the program
// without its folder and cut at 80 bytes, and its pid ("stent apply
// fix.stb (pid 4242)"); "process 4242" when /proc does not say.
func Describe(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if err != nil || args[0] == "" {
		return fmt.Sprintf("process %d", pid)
	}
	args[0] = filepath.Base(args[0])
	cmd := strings.Join(args, " ")
	if len(cmd) > 80 {
		cmd = cmd[:77] + "..."
	}
	return fmt.Sprintf("%s (pid %d)", cmd, pid)
}

// holderIn finds the holder of a FLOCK lock on the file dev, ino in the
// lines of /proc/locks ("1: FLOCK  ADVISORY  WRITE 4242 fe:00:5310160 0
// EOF"; waiters are marked "->" and skipped). The device is major:minor
// in hex, the inode decimal (fs/locks.c, lock_get_status).
func holderIn(sc *bufio.Scanner, dev, ino uint64) int {
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[1] != "FLOCK" || fs[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fs[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}
