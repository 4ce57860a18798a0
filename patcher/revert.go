package patcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stent-dev/stent/klp"
	"github.com/stent-dev/stent/kmod"
)

// RevertOptions tune Revert.
type RevertOptions struct {
	Timeout       time.Duration // how long to wait for the reverse transition; 0 means 60s
	KeepPersisted bool          // leave the stored copy so the next boot applies it again
	Progress      Progress
}

// Revert disables the live patch name, waits for the kernel to return every
// task to the original code, unloads the module and forgets the patch
// (including its stored copy unless KeepPersisted).
func (rt *Runtime) Revert(ctx context.Context, name string, opts RevertOptions) error {
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	name = moduleName(name)
	if err := checkName(name); err != nil {
		return fmt.Errorf("revert: %w", err)
	}
	unlock, err := rt.lock(ctx, opts.Progress)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return err // cancelled while waiting for the lock: nothing done
	}
	recs, _ := rt.Records()
	p, err := klp.Get(rt.cfg.Root, name)
	switch {
	case errors.Is(err, klp.ErrNoPatch):
		// Not registered: maybe a replaced patch whose module stayed
		// loaded. Only live patch modules are unloaded here: revert is not
		// a general rmmod.
		if rt.isLivepatchModule(name, recs) {
			opts.Progress.emit(Event{Step: "unload", Message: fmt.Sprintf("%s is no longer active (replaced); unloading its module", name)})
			if err := rt.unload(ctx, name); err != nil {
				return err
			}
			rt.forget(name, opts.KeepPersisted)
			return nil
		}
		if rt.isPersisted(name) && !opts.KeepPersisted {
			rt.forget(name, false)
			opts.Progress.emit(Event{Step: "done", Message: fmt.Sprintf("%s was not loaded; removed its stored copy", name)})
			return nil
		}
		return fmt.Errorf("revert %s: %w (stent list shows the loaded ones)", name, klp.ErrNoPatch)
	case err != nil:
		return fmt.Errorf("revert %s: %w", name, err)
	}
	start := rt.now()
	if p.Enabled {
		msg := "disabling " + name
		if p.Transition {
			msg = "reversing the unfinished transition of " + name
		}
		opts.Progress.emit(Event{Step: "reverse", Message: msg})
		// ErrNoPatch: freed since Get (disabled by someone else); the
		// wait below sees it gone and the module is still unloaded.
		if err := klp.Disable(rt.cfg.Root, name); err != nil && !errors.Is(err, klp.ErrNoPatch) {
			return fmt.Errorf("revert %s: %w", name, err)
		}
	}
	// Disabled: whatever happens next, the next boot must not load it again.
	if !opts.KeepPersisted {
		rt.unpersist(name)
	}
	// Once disabling started, finish the wait even if interrupted: the
	// kernel keeps going either way, and the module must be unloaded.
	if err := rt.waitGone(context.WithoutCancel(ctx), name, opts.Timeout, opts.Progress); err != nil {
		var se *StallError
		if errors.As(err, &se) {
			return fmt.Errorf("revert %s: %w", name, se.Cleanup)
		}
		return fmt.Errorf("revert %s: %w", name, err)
	}
	opts.Progress.emit(Event{Step: "unload", Message: "unloading module " + name})
	if err := rt.unload(context.WithoutCancel(ctx), name); err != nil {
		if r := recs[name]; r != nil && r.Forced {
			return fmt.Errorf("revert %s: the patch is disabled but its module stays: the kernel keeps modules of forced transitions (%w)", name, err)
		}
		return fmt.Errorf("revert %s: the patch is disabled but %w", name, err)
	}
	rt.forget(name, opts.KeepPersisted)
	opts.Progress.emit(Event{Step: "done", Message: fmt.Sprintf("%s reverted in %s", name, rt.now().Sub(start).Round(time.Millisecond))})
	return nil
}

func (rt *Runtime) forget(name string, keepPersisted bool) {
	rt.dropRecord(name)
	rt.clearPending(name)
	if !keepPersisted {
		rt.unpersist(name)
	}
}

// isLivepatchModule reports whether name is a loaded module that stent
// applied or that the kernel marks as a live patch (taint K).
func (rt *Runtime) isLivepatchModule(name string, recs map[string]*Record) bool {
	mods, err := kmod.Loaded(rt.cfg.Root)
	if err != nil {
		return false
	}
	for _, m := range mods {
		if m.Name == name {
			return recs[name] != nil || strings.Contains(m.Taint, "K")
		}
	}
	return false
}
