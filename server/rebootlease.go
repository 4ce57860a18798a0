package server

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// leaseInput is everything the lease decision looks at, gathered from
// memory; the leases the group holds come from the store at decision time.
type leaseInput struct {
	Now       time.Time
	Window    *window // nil: no window covers the host
	GroupSize int     // non-revoked hosts of the window's group
	// The kernel rollout the reboot is for ("" when the reboot is for a
	// reason the host reported), its state and the host's state in it.
	RolloutID    string
	RolloutState string
	HostState    string
	Emergency    bool
	Deadline     *time.Time
	Reasons      []string // reboot reasons the host reported
	NoReboot     bool     // the host has the stent.io/no-reboot label
	Approved     bool     // an operator approved this host's emergency reboot
	Retry        time.Duration
}

// heldLease is a lease another host of the group holds.
type heldLease struct {
	Host      string // hostname (or id)
	ExpiresAt time.Time
}

type leaseDecision struct {
	Grant    bool
	Wait     string
	RetryAt  time.Time
	Approval bool
	Group    string // the window whose budget the lease counts against
	Max      int
}

// decideLease decides whether a host may reboot now. In order: it needs a
// reason (a running kernel rollout in which it installed the kernel, or a
// reboot reason it reported), no stent.io/no-reboot label, to be inside
// its window (or an emergency rollout whose deadline comes before the
// window's next opening, approved by an operator when the window requires
// it), and room in its group's budget: fewer than max-unavailable leases
// held. Hosts no window covers reboot only for emergencies, one at a time.
func decideLease(in leaseInput, held []heldLease) leaseDecision {
	d := leaseDecision{}
	wait := func(at time.Time, format string, args ...any) leaseDecision {
		if at.IsZero() || at.Before(in.Now) {
			at = in.Now.Add(in.Retry)
		}
		d.Wait, d.RetryAt = fmt.Sprintf(format, args...), at
		return d
	}
	if in.RolloutID != "" {
		if in.RolloutState != api.RolloutRunning {
			return wait(time.Time{}, "kernel rollout %s is %s", in.RolloutID, in.RolloutState)
		}
		if in.HostState != api.KernelInstalled && in.HostState != api.KernelRebooting {
			return wait(time.Time{}, "kernel rollout %s: the host is %s; it reboots once the kernel is installed", in.RolloutID, in.HostState)
		}
	} else if len(in.Reasons) == 0 {
		return wait(time.Time{}, "no reason to reboot: no running kernel rollout has installed a kernel here and the host reports no reboot reason")
	}
	if in.NoReboot {
		return wait(time.Time{}, "host label %s", api.LabelNoReboot)
	}
	emergency := in.RolloutID != "" && in.Emergency
	d.Max = 1
	if in.Window == nil {
		if !emergency {
			return wait(time.Time{}, "no maintenance window covers this host")
		}
	} else {
		w := in.Window
		d.Group = w.Name
		d.Max, _ = budget(w.MaxUnavailable, in.GroupSize)
		if !w.sched.Contains(in.Now) {
			open, ok := w.sched.NextOpening(in.Now)
			when := "not within 400 days"
			if ok {
				when = open.In(w.sched.Location()).Format(time.RFC3339)
			}
			if !emergency {
				return wait(open, "outside window %s (opens %s)", w.Name, when)
			}
			if in.Deadline != nil && ok && !in.Deadline.Before(open) {
				return wait(open, "outside window %s (opens %s); the emergency's deadline %s is not before it", w.Name, when, in.Deadline.UTC().Format(time.RFC3339))
			}
			if w.RequireApproval && !in.Approved {
				d.Approval = true
				return wait(time.Time{}, "awaiting approval: emergency reboot outside window %s (opens %s); approve with stent fleet reboots approve", w.Name, when)
			}
		}
	}
	if len(held) >= d.Max {
		group := "of group " + d.Group
		if d.Group == "" {
			group = "without a window"
		}
		names := make([]string, len(held))
		first := time.Time{}
		for i, l := range held {
			names[i] = l.Host
			if first.IsZero() || l.ExpiresAt.Before(first) {
				first = l.ExpiresAt
			}
		}
		at := in.Now.Add(in.Retry)
		if first.Before(at) {
			at = first
		}
		return wait(at, "%d of %d hosts %s rebooting (%s)", len(held), d.Max, group, strings.Join(names, ", "))
	}
	d.Grant = true
	return d
}

// leaseInputLocked gathers h's lease input. Callers hold s.mu.
func (s *Server) leaseInputLocked(h *host, rollout string, reasons []string, now time.Time) (leaseInput, *kernelHost, error) {
	return s.leaseInputSized(h, rollout, reasons, now, nil)
}

// groupSizesLocked counts the non-revoked hosts of each window's group
// (nil: the hosts no window covers) in one pass. Callers hold s.mu.
func (s *Server) groupSizesLocked() map[*window]int {
	sizes := map[*window]int{}
	for _, h := range s.hosts {
		if h.RevokedAt.IsZero() {
			sizes[s.windowOf(h)]++
		}
	}
	return sizes
}

// leaseInputSized is leaseInputLocked with the group sizes of
// groupSizesLocked, for callers that gather the input of every host: one
// pass over the fleet instead of one per host (10,000 hosts took minutes).
// sizes nil counts h's group alone.
func (s *Server) leaseInputSized(h *host, rollout string, reasons []string, now time.Time, sizes map[*window]int) (leaseInput, *kernelHost, error) {
	in := leaseInput{Now: now, Window: s.windowOf(h), Retry: time.Duration(s.settings.CheckinInterval)}
	if sizes != nil {
		in.GroupSize = sizes[in.Window]
	} else {
		in.GroupSize = len(s.groupOf(in.Window))
	}
	var k *kernelHost
	if rollout != "" {
		if kr := s.rb.krByID[rollout]; kr != nil {
			k = kr.hosts[h.ID]
		}
		if k == nil {
			return in, nil, errorf(http.StatusNotFound, "not_found", "lease: kernel rollout %q: this host is not part of it", rollout)
		}
	} else {
		refs := s.rb.krefs[h.ID]
		for i := len(refs) - 1; i >= 0; i-- {
			switch refs[i].State {
			case api.KernelInstalling, api.KernelInstalled, api.KernelRebooting:
				if refs[i].r.State != kernelCancelled && refs[i].r.State != api.RolloutCompleted {
					k = refs[i]
				}
			}
			if k != nil {
				break
			}
		}
	}
	if k != nil {
		in.RolloutID, in.RolloutState, in.HostState = k.r.ID, k.r.State, k.State
		in.Emergency, in.Deadline = k.r.Emergency, k.r.Deadline
	}
	if kc := s.rb.kernels[h.ID]; kc != nil {
		in.Reasons = append(in.Reasons, kc.RebootReasons...)
	}
	in.Reasons = append(in.Reasons, reasons...)
	in.NoReboot = noReboot(h)
	in.Approved = s.rb.approvals[h.ID] != nil
	return in, k, nil
}

func noReboot(h *host) bool {
	v, ok := h.Labels[api.LabelNoReboot]
	return ok && v != "false"
}

// handleRebootLease grants, refuses or takes back a host's reboot lease.
// The budget is checked and the lease inserted in one store transaction
// under the lease lock, so that no two grants ever both see room for one.
func (s *Server) handleRebootLease(w http.ResponseWriter, r *http.Request) error {
	h := principalOf(r).host
	var req api.LeaseRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	if len(req.Reasons) > 16 || len(req.Rollout) > 64 || len(req.Kernel) > 128 || len(req.Lease) > 64 {
		return errorf(http.StatusBadRequest, "bad_request", "lease request: too many reasons or fields too long")
	}
	ctx := r.Context()
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	now := s.now().UTC()
	if req.Release {
		c := &kernelChange{release: []string{h.ID}}
		s.mu.RLock()
		for _, k := range s.rb.krefs[h.ID] {
			if k.State == api.KernelRebooting {
				row := k.KernelHost
				row.State, row.Detail, row.UpdatedAt = api.KernelInstalled, "lease given back by the host", now
				c.rows = append(c.rows, row)
			}
		}
		s.mu.RUnlock()
		if err := s.commitKernel(ctx, c, now, "given back by the host", nil); err != nil {
			return internal(err)
		}
		return writeJSON(w, http.StatusOK, api.LeaseResponse{Wait: "lease released"})
	}

	s.mu.RLock()
	in, k, err := s.leaseInputLocked(h, req.Rollout, req.Reasons, now)
	names := map[string]string{}
	for _, o := range s.hosts {
		names[o.ID] = o.Hostname
	}
	bootID := h.BootID
	back := s.expiryRowsLocked(now)
	if k != nil && k.State == api.KernelRebooting {
		if l := s.rb.leases[h.ID]; l != nil {
			if _, ok := back[l.ID]; ok {
				// Its own lease ran out: it asks as an installed host.
				in.HostState = api.KernelInstalled
			}
		}
	}
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	ttl := defaultLeaseTTL
	group := ""
	if in.Window != nil {
		ttl, group = time.Duration(in.Window.LeaseTTL), in.Window.Name
	}
	lease := &store.Lease{ID: newID("lease_"), HostID: h.ID, Group: group, Rollout: in.RolloutID, BootID: bootID, GrantedAt: now, ExpiresAt: now.Add(ttl)}
	var row *store.KernelHost
	if k != nil && in.HostState == api.KernelInstalled {
		nr := k.KernelHost
		nr.State, nr.Detail, nr.UpdatedAt = api.KernelRebooting, "lease "+lease.ID+" until "+lease.ExpiresAt.Format(time.RFC3339), now
		row = &nr
	}
	var (
		d       leaseDecision
		granted bool
		own     *store.Lease
		expired []*store.Lease
		backed  []store.KernelHost
	)
	err = s.w.do(ctx, func(tx *store.Tx) error {
		var err error
		d = leaseDecision{}
		granted, own, _, expired, err = tx.GrantLease(ctx, lease, now, func(held []*store.Lease) bool {
			hs := make([]heldLease, len(held))
			for i, l := range held {
				hs[i] = heldLease{Host: cmp(names[l.HostID], l.HostID), ExpiresAt: l.ExpiresAt}
			}
			d = decideLease(in, hs)
			return d.Grant
		})
		if err != nil {
			return err
		}
		if backed, err = writeExpired(ctx, tx, expired, back, now); err != nil {
			return err
		}
		if !granted || own != nil {
			return nil
		}
		if row != nil {
			if err := tx.PutKernelHost(ctx, row); err != nil {
				return err
			}
		}
		return tx.InsertAudit(ctx, &api.AuditEntry{At: now, Actor: "host:" + h.ID, Action: "reboot.lease-grant", Target: h.ID,
			Detail: mustJSON(map[string]any{"lease": lease.ID, "group": group, "rollout": lease.Rollout, "expires_at": lease.ExpiresAt,
				"emergency": in.Emergency, "reasons": in.Reasons, "max_unavailable": d.Max})})
	})
	if err != nil {
		return internal(err)
	}
	s.mu.Lock()
	s.expiredLocked(expired, now)
	s.applyKernelChange(&kernelChange{rows: backed}, nil)
	if granted && own == nil {
		s.rb.leases[h.ID] = lease
		if row != nil {
			k.KernelHost = *row
			s.recompute(h)
		}
	}
	if own != nil {
		s.rb.leases[h.ID] = own
	}
	s.mu.Unlock()
	resp := api.LeaseResponse{Window: group}
	switch {
	case own != nil:
		resp.Granted, resp.Lease, resp.ExpiresAt = true, own.ID, own.ExpiresAt
	case granted:
		resp.Granted, resp.Lease, resp.ExpiresAt = true, lease.ID, lease.ExpiresAt
		s.log.Info("reboot lease granted", "host", h.ID, "lease", lease.ID, "group", group, "rollout", lease.Rollout, "expires", lease.ExpiresAt)
	default:
		resp.Wait, resp.RetryAt, resp.Approval = d.Wait, d.RetryAt, d.Approval
	}
	return writeJSON(w, http.StatusOK, resp)
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// hostByIDOrName finds a non-revoked host. Callers hold s.mu.
func (s *Server) hostByIDOrName(idOrName string) *host {
	if h := s.hosts[idOrName]; h != nil && h.RevokedAt.IsZero() {
		return h
	}
	for _, h := range s.hosts {
		if h.Hostname == idOrName && h.RevokedAt.IsZero() {
			return h
		}
	}
	return nil
}

func (s *Server) handleApproveReboot(w http.ResponseWriter, r *http.Request) error {
	var req api.RebootApproval
	if r.ContentLength != 0 {
		if err := readJSON(r, 64<<10, &req); err != nil {
			return err
		}
	}
	if len(req.Reason) > 4096 {
		return errorf(http.StatusBadRequest, "bad_request", "reason: at most 4096 characters")
	}
	id, p := r.PathValue("id"), principalOf(r)
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	s.mu.RLock()
	h := s.hostByIDOrName(id)
	s.mu.RUnlock()
	if h == nil {
		return errorf(http.StatusNotFound, "not_found", "no enrolled host %s", id)
	}
	a := &store.Approval{HostID: h.ID, By: p.actor(), Reason: req.Reason, At: s.now().UTC()}
	e := &api.AuditEntry{At: a.At, Actor: p.actor(), Action: "reboot.approve", Target: h.ID, Detail: mustJSON(map[string]any{"hostname": h.Hostname, "reason": req.Reason})}
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.PutApproval(r.Context(), a); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if err != nil {
		return internal(err)
	}
	s.mu.Lock()
	s.rb.approvals[h.ID] = a
	s.mu.Unlock()
	s.log.Info("emergency reboot approved", "host", h.ID, "by", a.By)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rebootStatus is the operator's view: every non-revoked host with its
// window, kernel rollout, lease, blockers and what it waits for.
//
// q narrows the hosts: to one host (by id or hostname), or to the busy
// ones (api.RebootQuery).
func (s *Server) rebootStatus(q api.RebootQuery) api.RebootStatus {
	now := s.now().UTC()
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := api.RebootStatus{Windows: s.apiWindows(), Hosts: []api.HostReboot{}, At: now}
	sizes := s.groupSizesLocked()
	held := map[string][]heldLease{}
	for hid, l := range s.rb.leases {
		if now.Before(l.ExpiresAt) {
			name := hid
			if h := s.hosts[hid]; h != nil {
				name = h.Hostname
			}
			held[l.Group] = append(held[l.Group], heldLease{Host: name, ExpiresAt: l.ExpiresAt})
		}
	}
	for _, h := range s.hosts {
		if !h.RevokedAt.IsZero() {
			continue
		}
		if q.Host != "" && q.Host != h.ID && q.Host != h.Hostname {
			continue
		}
		hr := api.HostReboot{HostID: h.ID, Hostname: h.Hostname, State: "idle", Kernel: h.KernelRelease}
		in, k, _ := s.leaseInputSized(h, "", nil, now, sizes)
		if in.Window != nil {
			hr.Window = in.Window.Name
		}
		refs := s.rb.krefs[h.ID]
		if k == nil && len(refs) > 0 {
			k = refs[len(refs)-1]
		}
		if k != nil {
			hr.Rollout, hr.State, hr.Target = k.r.ID, k.State, k.r.Release
			if k.State == api.KernelFellBack || k.State == api.KernelFailed {
				hr.Wait = k.Detail
			}
		}
		kc := s.rb.kernels[h.ID]
		if kc != nil {
			if kc.Running != "" {
				hr.Kernel = kc.Running
			}
			hr.Blockers = append(hr.Blockers, kc.Blockers...)
			hr.LastBoot = kc.LastBoot
		}
		if in.NoReboot {
			hr.Blockers = append(hr.Blockers, "host label "+api.LabelNoReboot)
		}
		if l := s.rb.leases[h.ID]; l != nil && now.Before(l.ExpiresAt) {
			hr.Lease, hr.LeaseEnds = l.ID, l.ExpiresAt
		} else if in.RolloutID != "" || len(in.Reasons) > 0 {
			var others []heldLease
			group := ""
			if in.Window != nil {
				group = in.Window.Name
			}
			others = held[group]
			d := decideLease(in, others)
			if d.Grant {
				hr.Wait = "may reboot now: its next lease request is granted"
			} else {
				hr.Wait, hr.Approval = d.Wait, d.Approval
			}
		}
		if q.Busy && !hr.Busy() {
			continue
		}
		st.Hosts = append(st.Hosts, hr)
	}
	sort.Slice(st.Hosts, func(i, j int) bool {
		return st.Hosts[i].Hostname+st.Hosts[i].HostID < st.Hosts[j].Hostname+st.Hosts[j].HostID
	})
	return st
}

func (s *Server) handleReboots(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	q := api.RebootQuery{Host: v.Get("host")}
	switch b := v.Get("busy"); b {
	case "", "0", "false":
	case "1", "true":
		q.Busy = true
	default:
		return errorf(http.StatusBadRequest, "bad_request", "busy %q: want 1 or 0", b)
	}
	return writeJSON(w, http.StatusOK, s.rebootStatus(q))
}
