package patcher

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/stent-dev/stent/internal/flock"
)

// lock takes the runtime's exclusive lock (flock(2) on RunDir/lock), so
// that two stent processes (a person and the agent, say) never load,
// disable or unload live patches at the same time. It waits, saying so,
// until the lock is free or ctx ends.
func (rt *Runtime) lock(ctx context.Context, progress Progress) (unlock func(), err error) {
	unlock, err = flock.Lock(ctx, filepath.Join(rt.cfg.RunDir, "lock"), flock.Options{
		Perm: 0o600,
		OnWait: func(pid int) {
			e := Event{Step: "lock", Message: "waiting for another stent operation on this host to finish"}
			if pid > 0 {
				e.Holder = flock.Describe(pid)
				e.Message += " (" + e.Holder + " holds the lock)"
			}
			progress.emit(e)
		},
	})
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return nil, ctxErr // cancelled while waiting: ctx's error as it is (the CLI prints no error for it)
	}
	return unlock, err
}
