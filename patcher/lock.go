package patcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lock takes the runtime's exclusive lock (flock(2) on RunDir/lock), so
// that two stent processes (a person and the agent, say) never load,
// disable or unload live patches at the same time. It waits, saying so,
// until the lock is free or ctx ends.
func (rt *Runtime) lock(ctx context.Context, progress Progress) (unlock func(), err error) {
	if err := os.MkdirAll(rt.cfg.RunDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(rt.cfg.RunDir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told {
			progress.emit(Event{Step: "lock", Message: "waiting for another stent operation on this host to finish"})
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
