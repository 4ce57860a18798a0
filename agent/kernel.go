package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stent-dev/stent/api"
)

// KernelManager is what the agent needs to keep the host's kernel as the
// server wants it: the host's package manager and boot loader. The real one
// (internal/cli) drives apt or dnf and GRUB; tests and the fleet simulator
// use fakes.
type KernelManager interface {
	// Status reports the running kernel, the installed ones, the boot
	// loader's default, the last kernel that booted healthy and the
	// reasons the host has to reboot.
	Status(ctx context.Context) (*api.KernelCheckin, error)
	// Install installs k's packages at k.Version and returns what was
	// installed ("linux-image-6.1.0-57-amd64=6.1.192-3 ..."). On failure
	// the running system and its boot entries are as they were, and the
	// error carries the package manager's own message.
	Install(ctx context.Context, k api.DesiredKernel) (string, error)
	// BootOnce makes the next boot, and only the next, boot release: a
	// kernel that does not come back returns to the default by itself.
	BootOnce(ctx context.Context, release string) error
	// Confirm makes release the default boot entry and records it as the
	// last kernel that booted healthy.
	Confirm(ctx context.Context, release string) error
	// Cleanup removes old kernels, keeping the running and known-good ones.
	Cleanup(ctx context.Context) error
	// Reboot reboots the host; it returns once the reboot is under way.
	Reboot(ctx context.Context) error
}

// KernelState is the agent's persistent memory of kernel updates.
type KernelState struct {
	// Boot is set from just before a reboot into a new kernel until the
	// outcome of that boot is reported.
	Boot *PendingBoot `json:"boot,omitempty"`
	// LastBoot is the outcome of the last boot into a new kernel.
	LastBoot *api.BootOutcome `json:"last_boot,omitempty"`
}

// Phases of a PendingBoot.
const (
	bootTrying   = "trying"    // rebooting into the new kernel once
	bootFallback = "returning" // the new kernel came up unhealthy; rebooting into the old one
)

// PendingBoot is a reboot into a new kernel whose outcome is not known yet.
type PendingBoot struct {
	Rollout string    `json:"rollout,omitempty"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Lease   string    `json:"lease,omitempty"`
	BootID  string    `json:"boot_id"` // the boot the reboot left
	Phase   string    `json:"phase"`
	Reason  string    `json:"reason,omitempty"` // why it is returning
	Started time.Time `json:"started"`
}

// rebootGrace is how long after asking for a reboot the agent still waits
// for it before it takes the reboot as failed.
const rebootGrace = 10 * time.Minute

// kernelStep moves the host toward the desired kernel by one step: install,
// ask for a lease, reboot, or, after a reboot, judge the boot. It returns
// when it would like to be called again (zero: at the next check-in).
func (a *Agent) kernelStep(ctx context.Context, dk *api.DesiredKernel) time.Time {
	if a.cfg.Kernel == nil {
		return time.Time{}
	}
	a.reapInstall(ctx)
	if p := a.st.Kernel.Boot; p != nil {
		if a.bootID == p.BootID {
			if time.Since(p.Started) < rebootGrace {
				return time.Now().Add(30 * time.Second)
			}
			// The reboot never happened (the command returned, the host
			// stayed up): say so and give the budget back.
			a.finishBoot(ctx, p, api.ResultFailed, p.From, fmt.Sprintf("asked to reboot into %s at %s, but the host did not reboot", p.To, p.Started.Format(time.RFC3339)))
			return time.Time{}
		}
		a.afterBoot(ctx, p)
		return time.Time{}
	}
	ks, err := a.kernelStatus(ctx)
	if err != nil {
		a.log.Warn("kernel status", "err", err)
		return time.Time{}
	}
	if ks.KnownGood == "" && !a.knownGoodTried {
		// A host new to Stent: the kernel it runs, healthy, is the one to
		// fall back to and to keep.
		a.knownGoodTried = true
		if rs, err := a.cfg.Runtime.Status(ctx); err == nil {
			if h, _ := a.health(ctx, rs); h == api.HealthOK {
				if err := a.cfg.Kernel.Confirm(ctx, ks.Running); err != nil {
					a.log.Warn("record the running kernel as known-good", "kernel", ks.Running, "err", err)
				}
			}
		}
	}
	if dk == nil || dk.Release == "" || ks.Running == dk.Release {
		a.leaseWait = ""
		return time.Time{}
	}
	// The install runs once per rollout even when the release is there
	// already (installed by hand, by another tool, or the image's): the
	// package manager then brings it to the rollout's version if need be,
	// checks its boot files, and the report tells the server the host is
	// ready to reboot, which it waits for.
	if !a.installKernel(ctx, dk) {
		return time.Now().Add(installPoll)
	}
	if op := a.st.Ops[opKey(api.ActionKernelInstall, dk.Rollout, dk.Release)]; op != nil && op.Result == api.ResultFailed {
		return time.Time{} // reported; the server marks the host failed
	}
	if ks, err = a.kernelStatus(ctx); err != nil || !hasKernel(ks, dk) {
		return time.Time{}
	}
	return a.rebootInto(ctx, dk, ks)
}

func hasKernel(ks *api.KernelCheckin, dk *api.DesiredKernel) bool {
	for _, k := range ks.Installed {
		if k.Release == dk.Release {
			return true
		}
	}
	return false
}

// kernelInstall is a kernel install running beside the check-ins: apt can
// take minutes, and a host that stopped checking in meanwhile would show as
// offline. Only its goroutine writes what and err, before it closes done;
// the agent's own goroutine reads them after.
type kernelInstall struct {
	dk   api.DesiredKernel
	op   *Op
	done chan struct{}
	what string
	err  error
}

// installPoll is how often, at most, the agent looks at an install it runs
// in the background; it is woken as soon as the install ends anyway.
const installPoll = 30 * time.Second

// installKernel installs dk once per rollout and release: a failure is
// reported and not tried again until the server asks again (a new rollout).
// The install runs in the background; installKernel reports whether it has
// ended (false: call again later, check-ins go on meanwhile).
func (a *Agent) installKernel(ctx context.Context, dk *api.DesiredKernel) bool {
	if a.installing != nil && !a.reapInstall(ctx) {
		return false
	}
	key := opKey(api.ActionKernelInstall, dk.Rollout, dk.Release)
	if op := a.st.Ops[key]; op != nil && op.Done {
		return true
	}
	op := &Op{RequestID: newRequestID(), Action: api.ActionKernelInstall, Rollout: dk.Rollout, Name: dk.Release, Started: time.Now().UTC()}
	a.st.Ops[key] = op
	a.save()
	a.log.Info("installing kernel", "release", dk.Release, "version", dk.Version, "packages", dk.Packages)
	in := &kernelInstall{dk: *dk, op: op, done: make(chan struct{})}
	a.installing = in
	go func() {
		in.what, in.err = a.cfg.Kernel.Install(ctx, in.dk)
		close(in.done)
		a.wakeUp()
	}()
	return false
}

// reapInstall records the outcome of the background install if it has
// ended, and reports whether it has.
func (a *Agent) reapInstall(ctx context.Context) bool {
	in := a.installing
	if in == nil {
		return true
	}
	select {
	case <-in.done:
	default:
		return false
	}
	a.installing = nil
	a.kernelSeen = nil // installed kernels changed: read them afresh
	if ctx.Err() != nil {
		return true // the intent stays: the next start tries again
	}
	op, dk := in.op, in.dk
	op.Done, op.Finished, op.Result = true, time.Now().UTC(), api.ResultOK
	if in.err != nil {
		op.Result, op.Error = api.ResultFailed, in.err.Error()
		a.log.Error("kernel install failed", "release", dk.Release, "err", in.err)
	} else {
		a.log.Info("kernel installed", "release", dk.Release, "installed", in.what)
	}
	a.save()
	a.met.action(api.ActionKernelInstall, op.Result)
	a.queueReport(api.Report{RequestID: op.RequestID, Action: api.ActionKernelInstall, Rollout: dk.Rollout, Name: dk.Release,
		Result: op.Result, Error: op.Error, At: op.Finished, BootID: a.bootID})
	a.flushReports(ctx)
	return true
}

// rebootInto asks for a lease and, with one, reboots into dk once.
func (a *Agent) rebootInto(ctx context.Context, dk *api.DesiredKernel, ks *api.KernelCheckin) time.Time {
	if b := a.blockers(ctx); len(b) > 0 {
		a.kernelBlockers = b
		a.leaseWait = ""
		return time.Now().Add(time.Minute)
	}
	a.kernelBlockers = nil
	var lr api.LeaseResponse
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := a.c.Do(cctx, http.MethodPost, api.PathRebootLease, api.LeaseRequest{Rollout: dk.Rollout, Kernel: dk.Release, Reasons: ks.RebootReasons}, &lr)
	cancel()
	if err != nil {
		a.log.Warn("reboot lease", "err", err)
		return time.Now().Add(time.Minute)
	}
	if !lr.Granted {
		if lr.Wait != a.leaseWait {
			a.log.Info("waiting to reboot", "kernel", dk.Release, "why", lr.Wait)
		}
		a.leaseWait = lr.Wait
		if lr.RetryAt.IsZero() {
			return time.Now().Add(time.Minute)
		}
		return lr.RetryAt
	}
	a.leaseWait = ""
	a.log.Info("reboot lease granted", "lease", lr.Lease, "expires", lr.ExpiresAt)
	if err := a.runHooks(ctx, a.cfg.Hooks.PreReboot, "pre-reboot"); err != nil {
		a.kernelBlockers = []string{err.Error()}
		a.log.Warn("pre-reboot hook postpones the reboot", "err", err)
		a.releaseLease(ctx, dk.Rollout, lr.Lease)
		return time.Now().Add(time.Minute)
	}
	if err := a.cfg.Kernel.BootOnce(ctx, dk.Release); err != nil {
		a.kernelBlockers = []string{"boot loader: " + err.Error()}
		a.log.Error("one-shot boot entry", "err", err)
		a.releaseLease(ctx, dk.Rollout, lr.Lease)
		return time.Now().Add(time.Minute)
	}
	a.st.Kernel.Boot = &PendingBoot{Rollout: dk.Rollout, From: ks.Running, To: dk.Release, Lease: lr.Lease,
		BootID: a.bootID, Phase: bootTrying, Started: time.Now().UTC()}
	a.save()
	a.flushReports(ctx)
	a.log.Info("rebooting into the new kernel once", "from", ks.Running, "to", dk.Release)
	if err := a.cfg.Kernel.Reboot(ctx); err != nil {
		a.log.Error("reboot", "err", err)
		a.finishBoot(ctx, a.st.Kernel.Boot, api.ResultFailed, ks.Running, "reboot: "+err.Error())
		if c, ok := a.cfg.Kernel.(interface{ CancelBootOnce() error }); ok {
			if err := c.CancelBootOnce(); err != nil {
				a.log.Warn("cancel the trial boot", "err", err)
			}
		}
		return time.Now().Add(time.Minute)
	}
	return time.Now().Add(30 * time.Second)
}

// afterBoot judges the first boot after a reboot into a new kernel.
func (a *Agent) afterBoot(ctx context.Context, p *PendingBoot) {
	ks, err := a.kernelStatus(ctx)
	if err != nil {
		a.log.Warn("kernel status after boot", "err", err)
		return
	}
	switch {
	case p.Phase == bootFallback:
		a.finishBoot(ctx, p, api.ResultFellBack, ks.Running, p.Reason)
	case ks.Running != p.To:
		a.finishBoot(ctx, p, api.ResultFellBack, ks.Running, fmt.Sprintf(
			"the boot into %s did not come back (kernel panic, hang or no healthy agent); the boot loader returned to %s", p.To, ks.Running))
	default:
		// Let the boot settle (services, persisted live patches) first.
		sleep(ctx, a.cfg.HealthDelay)
		why := ""
		if err := a.runHooks(ctx, a.cfg.Hooks.PostReboot, "post-reboot"); err != nil {
			why = err.Error()
		} else if rs, err := a.cfg.Runtime.Status(ctx); err != nil {
			why = "runtime status: " + err.Error()
		} else if h, d := a.health(ctx, rs); h != api.HealthOK {
			why = "health " + h + ": " + d
		}
		if why == "" {
			if err := a.cfg.Kernel.Confirm(ctx, p.To); err != nil {
				why = "make it the default boot entry: " + err.Error()
			}
		}
		if why != "" {
			// Unhealthy on the new kernel: the default is still the old
			// one, so a plain reboot goes back.
			p.Phase, p.BootID, p.Reason = bootFallback, a.bootID, fmt.Sprintf("%s came up unhealthy: %s", p.To, why)
			a.save()
			a.log.Error("new kernel unhealthy; rebooting into the previous one", "kernel", p.To, "why", why)
			if err := a.cfg.Kernel.Reboot(ctx); err != nil {
				a.finishBoot(ctx, p, api.ResultFailed, ks.Running, p.Reason+"; reboot back: "+err.Error())
			}
			return
		}
		a.finishBoot(ctx, p, api.ResultOK, ks.Running, "")
		if err := a.cfg.Kernel.Cleanup(ctx); err != nil {
			a.log.Warn("old kernel cleanup", "err", err)
		}
	}
}

// finishBoot reports a boot's outcome, gives the lease back and forgets
// the pending boot.
func (a *Agent) finishBoot(ctx context.Context, p *PendingBoot, result, booted, reason string) {
	out := &api.BootOutcome{Rollout: p.Rollout, From: p.From, To: p.To, Booted: booted, Result: result, Reason: reason,
		At: time.Now().UTC(), Duration: api.Duration(time.Since(p.Started).Round(time.Second))}
	switch result {
	case api.ResultOK:
		a.log.Info("booted the new kernel healthy", "kernel", p.To, "after", time.Duration(out.Duration))
	default:
		a.log.Error("kernel boot "+result, "from", p.From, "to", p.To, "booted", booted, "reason", reason)
	}
	a.st.Kernel.LastBoot, a.st.Kernel.Boot = out, nil
	a.kernelSeen = nil // Confirm changed the default and the known-good kernel
	a.met.action(api.ActionKernelBoot, result)
	a.queueReport(api.Report{RequestID: newRequestID(), Action: api.ActionKernelBoot, Rollout: p.Rollout, Name: p.To,
		Result: result, Error: reason, At: out.At, BootID: a.bootID})
	a.flushReports(ctx)
	if p.Lease != "" {
		a.releaseLease(ctx, p.Rollout, p.Lease)
	}
}

func (a *Agent) releaseLease(ctx context.Context, rollout, lease string) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.c.Do(cctx, http.MethodPost, api.PathRebootLease, api.LeaseRequest{Rollout: rollout, Lease: lease, Release: true}, &api.LeaseResponse{}); err != nil {
		// The lease expires by itself; the server also releases it when it
		// sees the host back on its new kernel.
		a.log.Warn("release reboot lease", "lease", lease, "err", err)
	}
}

// kernelCheckin is the kernel part of a check-in.
func (a *Agent) kernelCheckin(ctx context.Context) *api.KernelCheckin {
	if a.cfg.Kernel == nil {
		return nil
	}
	// The kernel situation changes by Stent's own steps (which refresh
	// it), by an operator's apt run or a reboot: read at most every few
	// minutes, not at every check-in.
	if a.kernelSeen == nil || time.Since(a.kernelSeenAt) > kernelStatusTTL {
		ks, err := a.cfg.Kernel.Status(ctx)
		if err != nil {
			a.log.Warn("kernel status", "err", err)
			return nil
		}
		a.kernelSeen, a.kernelSeenAt = ks, time.Now()
	}
	ks := *a.kernelSeen
	ks.Blockers = slices.Clone(a.kernelBlockers)
	if a.st.Kernel.Boot != nil {
		ks.Lease = a.st.Kernel.Boot.Lease
	}
	ks.LastBoot = a.st.Kernel.LastBoot
	return &ks
}

// kernelStatusTTL is how long a check-in reuses the kernel situation read
// last.
const kernelStatusTTL = 5 * time.Minute

// kernelStatus reads the kernel situation afresh and keeps it for
// check-ins.
func (a *Agent) kernelStatus(ctx context.Context) (*api.KernelCheckin, error) {
	ks, err := a.cfg.Kernel.Status(ctx)
	if err == nil {
		cp := *ks
		a.kernelSeen, a.kernelSeenAt = &cp, time.Now()
	}
	return ks, err
}
