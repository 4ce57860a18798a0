package patcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stent-dev/stent/klp"
	"github.com/stent-dev/stent/kmod"
)

// nudgeEvery is how often tasks blocking a transition are signalled on
// kernels that offer the signal file. Kernels since 5.x signal blockers
// themselves about 15 s into a transition.
const nudgeEvery = 5 * time.Second

// waitApplied waits for the patching transition of name. On timeout it
// forces the transition (opts.Force) or reverses it and unloads the module.
func (rt *Runtime) waitApplied(ctx context.Context, name string, opts ApplyOptions) (forced bool, err error) {
	start := rt.now()
	deadline := start.Add(opts.Timeout)
	lastNudge := start
	lastReport := start // the first report comes after a second: most transitions finish sooner
	poll := rt.backoff()
	for {
		p, err := klp.Get(rt.cfg.Root, name)
		if err != nil {
			if errors.Is(err, klp.ErrNoPatch) {
				// The module loaded but registered no patch: it failed its
				// own init checks, or it is not what it claims to be.
				rt.unloadQuietly(ctx, name)
				return false, fmt.Errorf("module %s loaded but no live patch %s appeared in sysfs; unloaded it", name, name)
			}
			return false, err
		}
		if !p.Transition {
			if !p.Enabled {
				rt.unloadQuietly(ctx, name)
				return false, fmt.Errorf("live patch %s ended disabled (reverted by someone else?); unloaded it", name)
			}
			return false, nil
		}
		now := rt.now()
		if now.Sub(lastReport) >= time.Second {
			lastReport = now
			blockers, _ := klp.Blockers(rt.cfg.Root, klp.StatePatched)
			opts.Progress.emit(Event{Step: "transition", Pending: len(blockers), Blockers: blockers, Elapsed: now.Sub(start),
				Message: fmt.Sprintf("waiting for %s to switch to the new code (%s elapsed)", plural(len(blockers), "task", "tasks"), now.Sub(start).Round(time.Second))})
		}
		if p.HasControl("signal") && now.Sub(lastNudge) >= nudgeEvery {
			lastNudge = now
			if err := klp.Signal(rt.cfg.Root, name); err == nil {
				opts.Progress.emit(Event{Step: "nudge", Message: "signalled the tasks still on the old code"})
			}
		}
		if now.After(deadline) || ctx.Err() != nil {
			blockers, _ := klp.Blockers(rt.cfg.Root, klp.StatePatched)
			if opts.Force && ctx.Err() == nil {
				opts.Progress.emit(Event{Step: "force", Message: fmt.Sprintf("WARNING: forcing %s: %s marked switched without the safety check; modules of patches it replaces can never be removed", name, plural(len(blockers), "task is", "tasks are"))})
				if err := klp.Force(rt.cfg.Root, name); err != nil {
					// The transition may have finished just before the write
					// (the kernel then refuses it): that is success.
					if p, gerr := klp.Get(rt.cfg.Root, name); gerr == nil && p.Enabled && !p.Transition {
						return false, nil
					}
					return false, fmt.Errorf("force %s: %w", name, err)
				}
				if err := rt.waitUntil(context.WithoutCancel(ctx), name, 10*time.Second, func(p *klp.Patch) bool { return !p.Transition }); err != nil {
					return true, err
				}
				return true, nil
			}
			serr := &StallError{Name: name, Waited: now.Sub(start), Blockers: blockers}
			opts.Progress.emit(Event{Step: "reverse", Message: fmt.Sprintf("transition of %s stalled: reversing it", name), Blockers: blockers})
			// Undo even when ctx was cancelled: never leave a half-applied patch.
			serr.Cleanup = rt.reverseAndUnload(context.WithoutCancel(ctx), name, opts.Timeout, opts.Progress)
			var inner *StallError
			if errors.As(serr.Cleanup, &inner) {
				serr.Cleanup = inner.Cleanup // the reverse stalled too: keep its explanation only
			}
			serr.Reverted = serr.Cleanup == nil
			if ctx.Err() != nil && serr.Reverted {
				return false, fmt.Errorf("live patch %s: interrupted during its transition; reverted and unloaded: %w", name, ctx.Err())
			}
			return false, serr
		}
		time.Sleep(poll())
	}
}

// backoff returns a poll interval generator: transitions usually finish
// within tens of milliseconds, so the first 200 polls come 1 ms apart
// (a sysfs read costs microseconds), then the interval doubles up to
// cfg.Poll.
func (rt *Runtime) backoff() func() time.Duration {
	n, d := 0, time.Millisecond
	return func() time.Duration {
		if n++; n <= 200 {
			return time.Millisecond
		}
		if d *= 2; d > rt.cfg.Poll {
			d = rt.cfg.Poll
		}
		return d
	}
}

// reverseAndUnload disables (or reverses) the patch, waits for it to leave
// sysfs and unloads its module.
func (rt *Runtime) reverseAndUnload(ctx context.Context, name string, timeout time.Duration, progress Progress) error {
	if err := klp.Disable(rt.cfg.Root, name); err != nil && !errors.Is(err, klp.ErrNoPatch) {
		return err
	}
	if timeout < 10*time.Second {
		timeout = 10 * time.Second
	}
	if err := rt.waitGone(ctx, name, timeout, progress); err != nil {
		return err
	}
	progress.emit(Event{Step: "unload", Message: "unloading module " + name})
	return rt.unload(ctx, name)
}

// waitGone waits until the patch is no longer registered: its unpatching
// transition finished and the kernel freed it.
func (rt *Runtime) waitGone(ctx context.Context, name string, timeout time.Duration, progress Progress) error {
	start := rt.now()
	deadline := start.Add(timeout)
	lastReport := start
	poll := rt.backoff()
	for {
		p, err := klp.Get(rt.cfg.Root, name)
		if errors.Is(err, klp.ErrNoPatch) {
			return nil
		}
		if err != nil {
			return err
		}
		now := rt.now()
		if p.Transition && now.Sub(lastReport) >= time.Second {
			lastReport = now
			blockers, _ := klp.Blockers(rt.cfg.Root, klp.TransitionTarget(p))
			progress.emit(Event{Step: "transition", Pending: len(blockers), Blockers: blockers, Elapsed: now.Sub(start),
				Message: fmt.Sprintf("waiting for %s to return to the original code", plural(len(blockers), "task", "tasks"))})
		}
		if now.After(deadline) {
			blockers, _ := klp.Blockers(rt.cfg.Root, klp.TransitionTarget(p))
			return &StallError{Name: name, Waited: now.Sub(start), Blockers: blockers,
				Cleanup: fmt.Errorf("live patch %s is still registered (enabled=%v, transition=%v) after %s; the kernel keeps trying; run stent status to watch it, stent revert %s later", name, p.Enabled, p.Transition, timeout, name)}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(poll())
	}
}

// waitUntil polls the patch until cond holds or timeout passes.
func (rt *Runtime) waitUntil(ctx context.Context, name string, timeout time.Duration, cond func(*klp.Patch) bool) error {
	deadline := rt.now().Add(timeout)
	for {
		p, err := klp.Get(rt.cfg.Root, name)
		if err != nil {
			return err
		}
		if cond(p) {
			return nil
		}
		if rt.now().After(deadline) {
			return fmt.Errorf("live patch %s: still in transition after %s", name, timeout)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(rt.cfg.Poll)
	}
}

// unload removes a module, retrying while the kernel drops the last
// reference of a freed patch (the free runs asynchronously).
func (rt *Runtime) unload(ctx context.Context, name string) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = rt.sys.Unload(name); err == nil {
			return nil
		}
		if errors.Is(err, kmod.ErrNotLoaded) {
			return nil // already gone
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
	return err
}

func (rt *Runtime) unloadQuietly(ctx context.Context, name string) {
	if err := rt.unload(context.WithoutCancel(ctx), name); err != nil {
		rt.log.Warn("unload after failed apply", "module", name, "err", err)
	}
}

// unloadReplaced finds the patches that a cumulative patch replaced and
// unloads their modules. When the transition ends the kernel marks replaced
// patches disabled and frees them asynchronously, so a replaced patch is one
// that is gone from sysfs or disabled out of transition; stent waits for it
// to go before unloading its module. After a forced transition the kernel
// keeps the replaced patches' modules for good (klp_force_transition marks
// them forced): those are returned as pinned, not unloaded.
func (rt *Runtime) unloadReplaced(ctx context.Context, before []klp.Patch, name string, forced bool, progress Progress) (replaced, pinned []string) {
	for _, old := range before {
		if old.Name == name {
			continue
		}
		p, err := klp.Get(rt.cfg.Root, old.Name)
		switch {
		case errors.Is(err, klp.ErrNoPatch):
		case err == nil && !p.Enabled && !p.Transition:
			if err := rt.waitGone(ctx, old.Name, 10*time.Second, nil); err != nil {
				rt.log.Warn("replaced patch not freed", "patch", old.Name, "err", err)
			}
		default:
			continue // still active: not replaced (a non-cumulative patch was applied)
		}
		replaced = append(replaced, old.Name)
		if forced {
			pinned = append(pinned, old.Name)
			progress.emit(Event{Step: "replace", Message: fmt.Sprintf("%s replaced %s; after the forced transition the kernel keeps %s's module loaded for good", name, old.Name, old.Name)})
			continue
		}
		progress.emit(Event{Step: "replace", Message: fmt.Sprintf("%s replaced %s; unloading its module", name, old.Name)})
		if err := rt.unload(ctx, old.Name); err != nil {
			rt.log.Warn("unload replaced patch", "module", old.Name, "err", err)
			progress.emit(Event{Step: "replace", Message: fmt.Sprintf("could not unload %s: %v", old.Name, err)})
			pinned = append(pinned, old.Name)
		}
	}
	return replaced, pinned
}
