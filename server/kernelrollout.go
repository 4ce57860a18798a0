package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// krollout is a kernel rollout in memory; its fields are guarded by
// Server.mu, changes are serialised by rebootState.op.
type krollout struct {
	store.KernelRollout
	hosts map[string]*kernelHost
	order []*kernelHost
}

// kernelHost is one host's row in a kernel rollout.
type kernelHost struct {
	store.KernelHost
	r *krollout
	h *host
}

// Kernel rollout states besides the api.Rollout* ones it shares.
const kernelCancelled = "cancelled"

func (s *Server) addKernelRollout(sr *store.KernelRollout) *krollout {
	r := &krollout{KernelRollout: *sr, hosts: map[string]*kernelHost{}}
	s.rb.krs = append(s.rb.krs, r)
	s.rb.krByID[r.ID] = r
	return r
}

func (s *Server) attachKernel(r *krollout, h *host, kh *store.KernelHost) *kernelHost {
	k := &kernelHost{KernelHost: *kh, r: r, h: h}
	r.hosts[h.ID] = k
	r.order = append(r.order, k)
	s.rb.krefs[h.ID] = append(s.rb.krefs[h.ID], k)
	sort.SliceStable(s.rb.krefs[h.ID], func(i, j int) bool { return s.rb.krefs[h.ID][i].r.Seq < s.rb.krefs[h.ID][j].r.Seq })
	return k
}

// desiredKernel is the kernel h should install and boot: that of its
// latest kernel rollout in which it is installing, installed or rebooting,
// while that rollout runs or is paused (a paused rollout keeps what it
// started; a halted one keeps only the hosts already rebooting, so no
// other host installs the kernel that fell back). Callers hold s.mu.
func (s *Server) desiredKernel(h *host) *api.DesiredKernel {
	refs := s.rb.krefs[h.ID]
	for i := len(refs) - 1; i >= 0; i-- {
		k := refs[i]
		r := k.r
		ok := false
		switch k.State {
		case api.KernelInstalling, api.KernelInstalled:
			ok = r.State == api.RolloutRunning || r.State == api.RolloutPaused
		case api.KernelRebooting:
			ok = r.State == api.RolloutRunning || r.State == api.RolloutPaused || r.State == api.RolloutHalted
		}
		if !ok {
			continue
		}
		return &api.DesiredKernel{Rollout: r.ID, Release: r.Release, Version: r.Version, Packages: r.Packages,
			Emergency: r.Emergency, Deadline: r.Deadline, Reason: r.Reason}
	}
	return nil
}

// withKernel folds a desired kernel into a desired state's etag, so that
// a held long-poll wakes when it changes; without one the etag is the
// patches' alone.
func withKernel(etag string, k *api.DesiredKernel) string {
	if k == nil {
		return etag
	}
	b, _ := json.Marshal(k)
	return etagOf([]api.DesiredPatch{{Rollout: etag, Name: string(b)}})
}

var (
	kernelRelease  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$`)
	packageVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~:_-]{0,127}$`)
	packageName    = regexp.MustCompile(`^[a-z0-9][a-z0-9.+_-]{0,127}$`)
)

// createKernelRollout validates req, picks its targets and stores it.
func (s *Server) createKernelRollout(ctx context.Context, p *principal, req api.KernelRolloutRequest) (*krollout, error) {
	bad := func(format string, args ...any) error {
		return errorf(http.StatusBadRequest, "bad_request", format, args...)
	}
	switch {
	case !kernelRelease.MatchString(req.Release):
		return nil, bad("release %q: want a kernel release such as 6.1.0-57-amd64", req.Release)
	case req.Version != "" && !packageVersion.MatchString(req.Version):
		return nil, bad("version %q: want a package version such as 6.1.192-3 (or none: the kernel is installed already)", req.Version)
	case len(req.Reason) > 4096:
		return nil, bad("reason: at most 4096 characters")
	case len(req.Hosts) > 100000:
		return nil, bad("hosts: at most 100000")
	case req.Deadline != nil && !req.Emergency:
		return nil, bad("deadline: only an emergency rollout has one (add emergency)")
	}
	if len(req.Packages) == 0 {
		req.Packages = []string{"linux-image-" + req.Release}
	}
	for _, pkg := range req.Packages {
		if !packageName.MatchString(pkg) {
			return nil, bad("packages: %q is not a package name", pkg)
		}
	}
	for k, v := range req.Selector {
		if !api.ValidLabel(k, v) {
			return nil, bad("selector %s=%s: want letters, digits and ._-/", k, v)
		}
	}
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	now := s.now().UTC()

	s.mu.RLock()
	named := map[string]bool{}
	for _, n := range req.Hosts {
		named[n] = false
	}
	var targets []*host
	for _, h := range s.hosts {
		if !h.RevokedAt.IsZero() || !hasLabels(h.Labels, req.Selector) {
			continue
		}
		if len(req.Hosts) > 0 {
			_, byID := named[h.ID]
			_, byName := named[h.Hostname]
			if !byID && !byName {
				continue
			}
			if byID {
				named[h.ID] = true
			}
			if byName {
				named[h.Hostname] = true
			}
		}
		targets = append(targets, h)
	}
	var missing []string
	for _, n := range req.Hosts {
		if !named[n] {
			missing = append(missing, n)
		}
	}
	s.rb.lastSeq++
	kr := &store.KernelRollout{Seq: s.rb.lastSeq, UpdatedAt: now, KernelRollout: api.KernelRollout{
		ID: newID("kr_"), Release: req.Release, Version: req.Version, Packages: req.Packages, Selector: req.Selector, Hosts: req.Hosts,
		Emergency: req.Emergency, Deadline: req.Deadline, Reason: req.Reason, State: api.RolloutRunning, CreatedAt: now, CreatedBy: p.actor(),
	}}
	rows := make([]store.KernelHost, 0, len(targets))
	for _, h := range targets {
		row := store.KernelHost{RolloutID: kr.ID, HostID: h.ID, State: api.KernelInstalling, UpdatedAt: now}
		if kc := s.rb.kernels[h.ID]; kc != nil && kc.Running == req.Release && h.Health == api.HealthOK {
			row.State, row.Detail = api.KernelHealthy, "already running "+req.Release
		}
		rows = append(rows, row)
	}
	s.mu.RUnlock()
	if len(missing) > 0 {
		s.rb.lastSeq--
		return nil, bad("hosts: no enrolled, non-revoked host with id or name %q matches (and the selector, if given)", missing)
	}
	if len(targets) == 0 {
		s.rb.lastSeq--
		return nil, bad("selector %v: no enrolled host matches; nothing to roll out", req.Selector)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].HostID < rows[j].HostID })
	audit := &api.AuditEntry{At: now, Actor: p.actor(), Action: "kernel-rollout.create", Target: kr.ID, Detail: mustJSON(map[string]any{
		"release": kr.Release, "version": kr.Version, "packages": kr.Packages, "selector": kr.Selector, "hosts": kr.Hosts,
		"emergency": kr.Emergency, "deadline": kr.Deadline, "reason": kr.Reason, "target": len(rows)})}
	err := s.w.do(ctx, func(tx *store.Tx) error {
		if err := tx.InsertKernelRollout(ctx, kr); err != nil {
			return err
		}
		for i := range rows {
			if err := tx.PutKernelHost(ctx, &rows[i]); err != nil {
				return err
			}
		}
		return tx.InsertAudit(ctx, audit)
	})
	if err != nil {
		return nil, internal(err)
	}
	s.mu.Lock()
	r := s.addKernelRollout(kr)
	for i := range rows {
		h := s.hosts[rows[i].HostID]
		s.attachKernel(r, h, &rows[i])
		s.recompute(h)
	}
	s.mu.Unlock()
	s.log.Info("kernel rollout started", "rollout", r.ID, "release", r.Release, "version", r.Version, "target", len(rows), "emergency", r.Emergency)
	s.kickEngine()
	return r, nil
}

// kernelChange is a set of changes decided under s.mu and committed
// together: host rows, a rollout's new state, leases to release, audit
// entries.
type kernelChange struct {
	rows     []store.KernelHost
	rollouts []store.KernelRollout
	release  []string // host ids whose lease goes
	audit    []*api.AuditEntry
}

func (c *kernelChange) empty() bool {
	return len(c.rows) == 0 && len(c.rollouts) == 0 && len(c.release) == 0 && len(c.audit) == 0
}

// write runs in the writer: it stores c and audits the leases released.
// released gets the leases actually deleted.
func (c *kernelChange) write(ctx context.Context, tx *store.Tx, now time.Time, why string, released *[]*store.Lease) error {
	*released = nil
	for i := range c.rows {
		if err := tx.PutKernelHost(ctx, &c.rows[i]); err != nil {
			return err
		}
	}
	for i := range c.rollouts {
		if err := tx.UpdateKernelRollout(ctx, &c.rollouts[i]); err != nil {
			return err
		}
	}
	for _, id := range c.release {
		l, err := tx.ReleaseLease(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteApproval(ctx, id); err != nil {
			return err
		}
		if l == nil {
			continue
		}
		*released = append(*released, l)
		if err := tx.InsertAudit(ctx, &api.AuditEntry{At: now, Actor: "server", Action: "reboot.lease-release", Target: id,
			Detail: mustJSON(map[string]any{"lease": l.ID, "group": l.Group, "rollout": l.Rollout, "why": why})}); err != nil {
			return err
		}
	}
	for _, e := range c.audit {
		if err := tx.InsertAudit(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// apply puts a committed change into memory and wakes the hosts whose
// desired state changed. Callers hold s.mu.
func (s *Server) applyKernelChange(c *kernelChange, released []*store.Lease) {
	for _, row := range c.rows {
		if r := s.rb.krByID[row.RolloutID]; r != nil {
			if k := r.hosts[row.HostID]; k != nil {
				k.KernelHost = row
			}
		}
	}
	for _, sr := range c.rollouts {
		if r := s.rb.krByID[sr.ID]; r != nil {
			r.State, r.Halt, r.UpdatedAt = sr.State, sr.Halt, sr.UpdatedAt
			for _, k := range r.order {
				s.recompute(k.h)
			}
		}
	}
	for _, id := range c.release {
		delete(s.rb.approvals, id)
		if l := s.rb.leases[id]; l != nil {
			delete(s.rb.leases, id)
		}
	}
	for _, row := range c.rows {
		if h := s.hosts[row.HostID]; h != nil {
			s.recompute(h)
		}
	}
	_ = released
}

// commitKernel writes c and applies it. Callers hold s.rb.op.
func (s *Server) commitKernel(ctx context.Context, c *kernelChange, now time.Time, why string, extra func(*store.Tx) error) error {
	var released []*store.Lease
	err := s.w.do(ctx, func(tx *store.Tx) error {
		if extra != nil {
			if err := extra(tx); err != nil {
				return err
			}
		}
		return c.write(ctx, tx, now, why, &released)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.applyKernelChange(c, released)
	s.mu.Unlock()
	return nil
}

// haltLocked adds r's halt to c when r can still halt. Callers hold s.mu.
func haltLocked(c *kernelChange, r *krollout, why string, now time.Time) {
	if r.State != api.RolloutRunning && r.State != api.RolloutPaused {
		return
	}
	for _, sr := range c.rollouts {
		if sr.ID == r.ID {
			return
		}
	}
	next := r.KernelRollout
	next.State, next.Halt, next.UpdatedAt = api.RolloutHalted, why, now
	c.rollouts = append(c.rollouts, next)
	c.audit = append(c.audit, &api.AuditEntry{At: now, Actor: "server", Action: "kernel-rollout.halted", Target: r.ID,
		Detail: mustJSON(map[string]any{"release": r.Release, "halt": why})})
}

// handleKernelReport records an agent's kernel-install or kernel-boot
// report once per request id and moves the host's row:
// install ok -> installed, install failed -> failed; boot ok -> healthy,
// boot fell-back -> fell-back and boot failed -> failed, both of which halt
// the rollout. A boot report releases the host's lease.
func (s *Server) handleKernelReport(w http.ResponseWriter, r *http.Request, h *host, rep *api.Report) error {
	switch {
	case rep.Action == api.ActionKernelInstall && (rep.Result == api.ResultOK || rep.Result == api.ResultFailed):
	case rep.Action == api.ActionKernelBoot && (rep.Result == api.ResultOK || rep.Result == api.ResultFailed || rep.Result == api.ResultFellBack):
	default:
		return errorf(http.StatusBadRequest, "bad_request", "report: result %q of %s: want ok or failed (kernel-boot also fell-back)", rep.Result, rep.Action)
	}
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	now := s.now().UTC()
	s.mu.RLock()
	var k *kernelHost
	if kr := s.rb.krByID[rep.Rollout]; kr != nil {
		k = kr.hosts[h.ID]
	}
	if k == nil {
		s.mu.RUnlock()
		return errorf(http.StatusNotFound, "not_found", "report: kernel rollout %q: this host is not part of it", rep.Rollout)
	}
	c := &kernelChange{}
	row := k.KernelHost
	row.UpdatedAt = now
	name := h.Hostname
	switch {
	case rep.Action == api.ActionKernelInstall && rep.Result == api.ResultOK:
		if row.State == api.KernelPending || row.State == api.KernelInstalling || row.State == api.KernelFailed {
			row.State, row.Detail = api.KernelInstalled, "installed "+k.r.Release
		}
	case rep.Action == api.ActionKernelInstall:
		if row.State != api.KernelHealthy {
			row.State, row.Detail = api.KernelFailed, "install: "+rep.Error
		}
	case rep.Result == api.ResultOK:
		row.State, row.Detail = api.KernelHealthy, "booted "+k.r.Release+", healthy"
		c.release = append(c.release, h.ID)
	default:
		row.State, row.Detail = api.KernelFailed, "boot: "+rep.Error
		if rep.Result == api.ResultFellBack {
			row.State, row.Detail = api.KernelFellBack, rep.Error
		}
		c.release = append(c.release, h.ID)
		haltLocked(c, k.r, fmt.Sprintf("host %s (%s) %s on %s: %s", name, h.ID, rep.Result, k.r.Release, rep.Error), now)
	}
	if row != k.KernelHost {
		c.rows = append(c.rows, row)
	}
	s.mu.RUnlock()

	var inserted bool
	audit := &api.AuditEntry{At: now, Actor: "host:" + h.ID, Action: "host." + rep.Action, Target: h.ID, Detail: mustJSON(map[string]any{
		"rollout": rep.Rollout, "name": rep.Name, "result": rep.Result, "error": rep.Error, "request_id": rep.RequestID, "at": rep.At})}
	var released []*store.Lease
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		var err error
		if inserted, err = tx.InsertReport(r.Context(), h.ID, rep, now); err != nil || !inserted {
			return err
		}
		if err := tx.InsertAudit(r.Context(), audit); err != nil {
			return err
		}
		return c.write(r.Context(), tx, now, "kernel-boot "+rep.Result, &released)
	})
	if err != nil {
		return internal(err)
	}
	s.met.reports.WithLabelValues(rep.Action, rep.Result).Inc()
	if inserted {
		s.mu.Lock()
		s.applyKernelChange(c, released)
		s.mu.Unlock()
		s.log.Info("host kernel report", "host", h.ID, "action", rep.Action, "rollout", rep.Rollout, "result", rep.Result, "error", rep.Error)
		for _, sr := range c.rollouts {
			s.log.Warn("kernel rollout halted", "rollout", sr.ID, "halt", sr.Halt)
		}
		s.kickEngine()
	}
	return writeJSON(w, http.StatusOK, api.ReportResponse{Duplicate: !inserted})
}

// syncKernel takes the kernel part of a check-in: it stores a changed
// KernelCheckin, counts a new boot's duration, marks the host healthy in
// the kernel rollouts whose release it now runs healthy, and releases its
// lease once it came back (a new boot, healthy, on the rollout's kernel).
func (s *Server) syncKernel(ctx context.Context, h *host, c *api.Checkin) error {
	s.mu.RLock()
	old := s.rb.kernels[h.ID]
	changed := c.Kernel != nil && !sameJSON(old, c.Kernel)
	_, leased := s.rb.leases[h.ID]
	active := leased
	for _, k := range s.rb.krefs[h.ID] {
		if k.State == api.KernelInstalling || k.State == api.KernelInstalled || k.State == api.KernelRebooting {
			active = true
		}
	}
	s.mu.RUnlock()
	if !changed && !active {
		return nil
	}
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	now := s.now().UTC()
	running := c.KernelRelease
	if c.Kernel != nil && c.Kernel.Running != "" {
		running = c.Kernel.Running
	}
	// Running the new kernel is not yet a healthy boot: the agent judges it
	// (post-reboot hooks, health) and only then records it as its
	// known-good kernel. Until then the host keeps its lease, so that no
	// other host of the group goes down while this one may still fall
	// back. Agents that do not manage kernels send no KernelCheckin.
	judged := c.Kernel == nil || c.Kernel.KnownGood == running
	ch := &kernelChange{}
	s.mu.RLock()
	for _, k := range s.rb.krefs[h.ID] {
		switch k.State {
		case api.KernelInstalling, api.KernelInstalled, api.KernelRebooting:
		default:
			continue
		}
		if running == k.r.Release && c.Health == api.HealthOK && judged && k.r.State != kernelCancelled {
			row := k.KernelHost
			row.State, row.Detail, row.UpdatedAt = api.KernelHealthy, "running "+running+", healthy", now
			ch.rows = append(ch.rows, row)
		}
	}
	if l := s.rb.leases[h.ID]; l != nil && c.Health == api.HealthOK && judged && c.BootID != "" && c.BootID != l.BootID {
		release := ""
		if kr := s.rb.krByID[l.Rollout]; kr != nil {
			release = kr.Release
		}
		if release == "" || release == running {
			ch.release = append(ch.release, h.ID)
		}
	}
	s.mu.RUnlock()
	var observe time.Duration
	if changed && c.Kernel.LastBoot != nil && c.Kernel.LastBoot.Result == api.ResultOK &&
		(old == nil || old.LastBoot == nil || !old.LastBoot.At.Equal(c.Kernel.LastBoot.At)) {
		observe = time.Duration(c.Kernel.LastBoot.Duration)
	}
	if !changed && ch.empty() {
		return nil
	}
	kc := c.Kernel
	err := s.commitKernel(ctx, ch, now, "host came back healthy", func(tx *store.Tx) error {
		if changed {
			return tx.SaveKernelCheckin(ctx, h.ID, kc)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if changed {
		s.mu.Lock()
		s.rb.kernels[h.ID] = kc
		s.mu.Unlock()
	}
	if observe > 0 && s.rb.duration != nil {
		s.rb.duration.Observe(observe.Seconds())
	}
	if len(ch.rows) > 0 {
		s.kickEngine()
	}
	return nil
}

// checkKernelCheckin bounds what a host may store about its kernels.
func checkKernelCheckin(kc *api.KernelCheckin) error {
	if kc == nil {
		return nil
	}
	n := len(kc.Running) + len(kc.RunningVersion) + len(kc.Default) + len(kc.KnownGood) + len(kc.Lease)
	for _, s := range kc.RebootReasons {
		n += len(s)
	}
	for _, s := range kc.Blockers {
		n += len(s)
	}
	for _, k := range kc.Installed {
		n += len(k.Release) + len(k.Package) + len(k.Version)
	}
	if lb := kc.LastBoot; lb != nil {
		n += len(lb.Rollout) + len(lb.From) + len(lb.To) + len(lb.Booted) + len(lb.Result) + len(lb.Reason)
	}
	if len(kc.Installed) > 64 || len(kc.RebootReasons) > 16 || len(kc.Blockers) > 32 || n > 32<<10 {
		return errorf(http.StatusBadRequest, "bad_request", "check-in: kernel: at most 64 installed kernels, 16 reboot reasons, 32 blockers and 32 KiB of text")
	}
	return nil
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// stepKernel runs with the rollout engine: it expires the leases whose TTL
// ran out (their hosts go back to installed) and completes the kernel
// rollouts whose every target is healthy, failed or fell back.
func (s *Server) stepKernel(ctx context.Context) error {
	now := s.now().UTC()
	s.mu.RLock()
	due := false
	for _, l := range s.rb.leases {
		if !now.Before(l.ExpiresAt) {
			due = true
		}
	}
	var done []*krollout
	for _, r := range s.rb.krs {
		if r.State != api.RolloutRunning {
			continue
		}
		finished := true
		for _, k := range r.order {
			switch k.State {
			case api.KernelHealthy, api.KernelFailed, api.KernelFellBack:
			default:
				finished = false
			}
		}
		if finished {
			done = append(done, r)
		}
	}
	s.mu.RUnlock()
	if !due && len(done) == 0 {
		return nil
	}
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	c := &kernelChange{}
	s.mu.RLock()
	for _, r := range done {
		next := r.KernelRollout
		next.State, next.UpdatedAt = api.RolloutCompleted, now
		c.rollouts = append(c.rollouts, next)
		c.audit = append(c.audit, &api.AuditEntry{At: now, Actor: "server", Action: "kernel-rollout.complete", Target: r.ID,
			Detail: mustJSON(map[string]any{"release": r.Release})})
	}
	back := s.expiryRowsLocked(now)
	s.mu.RUnlock()
	var expired []*store.Lease
	var rows []store.KernelHost
	err := s.w.do(ctx, func(tx *store.Tx) error {
		var err error
		if expired, err = tx.ExpireLeases(ctx, now); err != nil {
			return err
		}
		if rows, err = writeExpired(ctx, tx, expired, back, now); err != nil {
			return err
		}
		var rel []*store.Lease
		return c.write(ctx, tx, now, "", &rel)
	})
	if err != nil {
		return err
	}
	c.rows = append(rows, c.rows...)
	s.mu.Lock()
	s.expiredLocked(expired, now)
	s.applyKernelChange(c, nil)
	s.mu.Unlock()
	return nil
}

// expiryRowsLocked returns, by lease id, the row each host whose lease is
// due at now goes back to: installed, to ask again. Callers hold s.mu.
func (s *Server) expiryRowsLocked(now time.Time) map[string]store.KernelHost {
	out := map[string]store.KernelHost{}
	for _, l := range s.rb.leases {
		if now.Before(l.ExpiresAt) {
			continue
		}
		if kr := s.rb.krByID[l.Rollout]; kr != nil {
			if k := kr.hosts[l.HostID]; k != nil && k.State == api.KernelRebooting {
				row := k.KernelHost
				row.State, row.Detail, row.UpdatedAt = api.KernelInstalled, fmt.Sprintf("lease expired at %s without a healthy boot", l.ExpiresAt.Format(time.RFC3339)), now
				out[l.ID] = row
			}
		}
	}
	return out
}

// writeExpired audits the leases the store expired and writes their
// hosts' rows from back; it returns the rows written.
func writeExpired(ctx context.Context, tx *store.Tx, expired []*store.Lease, back map[string]store.KernelHost, now time.Time) ([]store.KernelHost, error) {
	var rows []store.KernelHost
	for _, l := range expired {
		if err := tx.InsertAudit(ctx, &api.AuditEntry{At: now, Actor: "server", Action: "reboot.lease-expire", Target: l.HostID,
			Detail: mustJSON(map[string]any{"lease": l.ID, "group": l.Group, "rollout": l.Rollout, "expires_at": l.ExpiresAt})}); err != nil {
			return nil, err
		}
		if row, ok := back[l.ID]; ok {
			if err := tx.PutKernelHost(ctx, &row); err != nil {
				return nil, err
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// expiredLocked forgets expired leases. Callers hold s.mu.
func (s *Server) expiredLocked(expired []*store.Lease, now time.Time) {
	for _, l := range expired {
		if cur := s.rb.leases[l.HostID]; cur != nil && cur.ID == l.ID {
			delete(s.rb.leases, l.HostID)
		}
		s.log.Info("reboot lease expired", "host", l.HostID, "lease", l.ID, "group", l.Group)
	}
}

// kernelRolloutAction pauses, resumes or cancels a kernel rollout.
func (s *Server) kernelRolloutAction(ctx context.Context, p *principal, id, action string, req api.RolloutActionRequest) (*krollout, error) {
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	s.mu.RLock()
	r := s.rb.krByID[id]
	var next store.KernelRollout
	if r != nil {
		next = r.KernelRollout
	}
	s.mu.RUnlock()
	if r == nil {
		return nil, errorf(http.StatusNotFound, "not_found", "no kernel rollout %s", id)
	}
	bad := errorf(http.StatusConflict, "conflict", "kernel rollout %s is %s; cannot %s it", id, next.State, action)
	switch action {
	case "pause":
		if next.State != api.RolloutRunning {
			return nil, bad
		}
		next.State = api.RolloutPaused
	case "resume":
		if next.State != api.RolloutPaused && next.State != api.RolloutHalted {
			return nil, bad
		}
		next.State, next.Halt = api.RolloutRunning, ""
	case "cancel":
		if next.State == api.RolloutCompleted || next.State == kernelCancelled {
			return nil, bad
		}
		next.State = kernelCancelled
	default:
		return nil, errorf(http.StatusNotFound, "not_found", "unknown kernel rollout action %q: want pause, resume or cancel", action)
	}
	now := s.now().UTC()
	next.UpdatedAt = now
	c := &kernelChange{rollouts: []store.KernelRollout{next}, audit: []*api.AuditEntry{{At: now, Actor: p.actor(), Action: "kernel-rollout." + action,
		Target: id, Detail: mustJSON(map[string]any{"state": next.State, "reason": req.Reason})}}}
	if err := s.commitKernel(ctx, c, now, "", nil); err != nil {
		return nil, internal(err)
	}
	s.log.Info("kernel rollout "+action, "rollout", id, "state", next.State, "reason", req.Reason)
	s.kickEngine()
	return r, nil
}

// apiKernelRollout renders r. Callers hold s.mu.
func (s *Server) apiKernelRollout(r *krollout, withTargets bool) api.KernelRollout {
	out := r.KernelRollout.KernelRollout
	out.Counts = map[string]int{}
	out.Targets = nil
	for _, k := range r.order {
		out.Counts[k.State]++
		if withTargets {
			out.Targets = append(out.Targets, api.KernelHost{HostID: k.HostID, Hostname: k.h.Hostname, State: k.State, Detail: k.Detail, UpdatedAt: k.UpdatedAt})
		}
	}
	return out
}

func (s *Server) handleCreateKernelRollout(w http.ResponseWriter, r *http.Request) error {
	var req api.KernelRolloutRequest
	if err := readJSON(r, 4<<20, &req); err != nil {
		return err
	}
	kr, err := s.createKernelRollout(r.Context(), principalOf(r), req)
	if err != nil {
		return err
	}
	s.mu.RLock()
	out := s.apiKernelRollout(kr, false)
	s.mu.RUnlock()
	return writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleKernelRollouts(w http.ResponseWriter, r *http.Request) error {
	s.mu.RLock()
	out := make([]api.KernelRollout, 0, len(s.rb.krs))
	for _, kr := range s.rb.krs {
		out = append(out, s.apiKernelRollout(kr, false))
	}
	s.mu.RUnlock()
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleKernelRollout(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	s.mu.RLock()
	kr := s.rb.krByID[id]
	var out api.KernelRollout
	if kr != nil {
		out = s.apiKernelRollout(kr, true)
	}
	s.mu.RUnlock()
	if kr == nil {
		return errorf(http.StatusNotFound, "not_found", "no kernel rollout %s", id)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleKernelRolloutAction(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutActionRequest
	if r.ContentLength != 0 {
		if err := readJSON(r, 64<<10, &req); err != nil {
			return err
		}
	}
	kr, err := s.kernelRolloutAction(r.Context(), principalOf(r), r.PathValue("id"), r.PathValue("action"), req)
	if err != nil {
		return err
	}
	s.mu.RLock()
	out := s.apiKernelRollout(kr, false)
	s.mu.RUnlock()
	return writeJSON(w, http.StatusOK, out)
}
