package patcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/flock"
)

// While another operation holds the host lock, Revert waits, says so once
// naming the holder (this process, through another open of the lock file),
// and gives up with ctx's own error when ctx ends, having done nothing.
func TestLockWaitsAndSaysForWhom(t *testing.T) {
	dir := t.TempDir()
	rt := New(Config{Root: dir, StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"), KeysDir: filepath.Join(dir, "keys")})
	unlock, err := flock.Lock(t.Context(), filepath.Join(dir, "run", "lock"), flock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var events []Event
	err = rt.Revert(ctx, "lp_x", RevertOptions{Progress: func(e Event) { events = append(events, e) }})
	if err != context.DeadlineExceeded {
		t.Errorf("Revert(lock held) = %v, want context.DeadlineExceeded as it is", err)
	}
	holder := flock.Describe(os.Getpid()) // "patcher.test -test.run=... (pid N)"
	want := "waiting for another stent operation on this host to finish (" + holder + " holds the lock)"
	if len(events) != 1 || events[0].Step != "lock" || events[0].Message != want || events[0].Holder != holder || !strings.Contains(holder, fmt.Sprintf("(pid %d)", os.Getpid())) {
		t.Errorf("Revert(lock held) events = %+v, want one lock event %q", events, want)
	}
}
