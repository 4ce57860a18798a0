package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/store"
)

// From plan to action. After each evaluation the server turns the actions
// of the plans of the groups it evaluated into proposals, one per kernel
// situation group, kind and target (the idempotency key: a proposal starts
// once, and a host that joins the group later gets the same action started
// for it alone). The kinds it can carry out: apply-livepatch (a rollout of
// the published bundle to exactly those hosts) and emergency-reboot and
// reboot (a kernel rollout of the reboot scheduler to those hosts, into the
// newest installed kernel). The policy's "unattended" kinds start at once;
// the others wait for POST /v1/admin/actions/{id}/approve. A host leaves an
// action when its plan no longer has it (its next inventory shows it
// done); an action without hosts is done.

// actionKinds are the action kinds the server carries out.
var actionKinds = []string{policy.ActApplyLivePatch, policy.ActEmergencyReboot, policy.ActReboot}

// A reboot whose kernel is not installed yet (the plan upgrades the kernel
// package first) is one action: its kernel rollout installs the fixed
// image and the metapackage, then reboots into it; an emergency reboot's
// is an emergency kernel rollout with the plan's deadline. The plan names
// the fix by package version ("linux-image-amd64 6.1.192-2 or later");
// the release that version boots is what another host of the fleet
// reports installed or running (kernelIndex). Until one does, the action
// is proposed with the reason and cannot start.

// actionKeeper holds the live plan's actions.
type actionKeeper struct {
	mu   sync.Mutex // serialises syncs and approvals; guards byID
	byID map[string]*api.PlanAction
	// buildsSeen is the live plan's buildsGen the unresolved reboots were
	// last looked at with.
	buildsSeen uint64
}

func groupID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:6])
}

func actionID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "act_" + hex.EncodeToString(sum[:8])
}

// loadActions reads the stored actions.
func (s *Server) loadActions(ctx context.Context) error {
	as, err := s.st.ListPlanActions(ctx)
	if err != nil {
		return err
	}
	s.ak.mu.Lock()
	defer s.ak.mu.Unlock()
	s.ak.byID = map[string]*api.PlanAction{}
	for _, a := range as {
		s.ak.byID[a.ID] = a
	}
	return nil
}

// wanted is an action as the plans of one group have it.
type wanted struct {
	a      api.PlanAction
	kernel string // the hosts' running kernel (a live patch's bundle is for it)
	hosts  []string
	reason string // why it cannot be carried out, if so
}

// syncActions brings the actions of the given groups in line with their
// hosts' plans, and carries out what may be.
func (s *Server) syncActions(ctx context.Context, groups []string) {
	lp := s.lp
	gids := map[string]bool{}
	want := map[string]*wanted{}
	var kernels *kernelIndex // built when an action needs it
	// Reboots whose kernel was not known are looked at again, whatever
	// group changed, once an inventory reports a build not seen before.
	lp.mu.RLock()
	buildsGen := lp.buildsGen
	lp.mu.RUnlock()
	unresolved := map[string]bool{}
	s.ak.mu.Lock()
	if s.ak.buildsSeen != buildsGen {
		for _, a := range s.ak.byID {
			if a.State != api.ActionDone && a.Kind != policy.ActApplyLivePatch && !kernelRelease.MatchString(a.Target) {
				unresolved[a.Group] = true
			}
		}
		s.ak.buildsSeen = buildsGen
	}
	s.ak.mu.Unlock()
	lp.mu.RLock()
	pol, polVersion := lp.pol, lp.polVersion
	if len(unresolved) > 0 {
		for key, g := range lp.groups {
			if unresolved[g.id] && !slices.Contains(groups, key) {
				groups = append(groups, key)
			}
		}
	}
	for _, key := range groups {
		gid := groupID(key)
		gids[gid] = true
		g := lp.groups[key]
		if g == nil {
			continue
		}
		for id, h := range g.hosts {
			if h.plan == nil {
				continue
			}
			var upgrade *policy.Action
			for i, a := range h.plan.Actions {
				if a.Kind == policy.ActUpgradeUrgent || a.Kind == policy.ActUpgrade {
					upgrade = &h.plan.Actions[i]
				}
			}
			for _, pa := range h.plan.Actions {
				if !slices.Contains(actionKinds, pa.Kind) {
					continue
				}
				target, summary, reason := pa.LivePatch, pa.Summary, ""
				var up *upgradeTo
				if pa.Kind != policy.ActApplyLivePatch {
					target = h.inv.NewestKernel
					if upgrade != nil || target == "" || target == h.inv.Kernel.Release {
						// The kernel to boot is not installed yet: the
						// kernel rollout installs it first.
						if kernels == nil {
							kernels = fleetKernels(lp)
						}
						up, reason = kernels.upgrade(h.inv, upgrade)
						target = pa.Kernel
						if up != nil {
							target = up.release
							summary = fmt.Sprintf("install %s %s (kernel %s), then %s", upgrade.Package, up.version, up.release, pa.Summary)
						}
					}
				}
				k := pa.Kind + "/" + gid + "/" + target
				if up != nil {
					k += "@" + up.version
				}
				w := want[k]
				if w == nil {
					w = &wanted{kernel: h.inv.Kernel.Release, reason: reason, a: api.PlanAction{
						ID: actionID(k), Key: k, Kind: pa.Kind, Group: gid, Target: target, Summary: summary, Deadline: pa.Deadline, CVEs: pa.CVEs}}
					if up != nil {
						w.a.Version, w.a.Packages = up.version, up.packages
					}
					want[k] = w
				}
				w.hosts = append(w.hosts, id)
			}
		}
	}
	lp.mu.RUnlock()

	s.ak.mu.Lock()
	defer s.ak.mu.Unlock()
	now := s.now().UTC()
	var changed []*api.PlanAction
	for _, a := range s.ak.byID {
		if !gids[a.Group] || a.State == api.ActionDone {
			continue
		}
		if _, ok := want[a.Key]; !ok {
			// No host's plan has it: done (or never needed, if proposed).
			a.Hosts, a.HostCount, a.State, a.UpdatedAt = []string{}, 0, api.ActionDone, now
			changed = append(changed, a)
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := want[k]
		sort.Strings(w.hosts)
		a := s.ak.byID[w.a.ID]
		dirty := false
		if a == nil || a.State == api.ActionDone {
			// New, or needed again after it was done: a new round.
			fresh := w.a
			fresh.State, fresh.CreatedAt = api.ActionProposed, now
			a, dirty = &fresh, true
			s.ak.byID[a.ID] = a
		} else if a.Summary != w.a.Summary || !slices.Equal(a.CVEs, w.a.CVEs) {
			a.Summary, a.Deadline, a.CVEs, dirty = w.a.Summary, w.a.Deadline, w.a.CVEs, true
		}
		if a.State == api.ActionProposed && a.Error != w.reason {
			// Why it could not be carried out if approved now.
			a.Error, dirty = w.reason, true
		}
		if dirty || !slices.Equal(a.Hosts, w.hosts) {
			a.Hosts, a.HostCount, a.UpdatedAt = w.hosts, len(w.hosts), now
			changed = append(changed, a)
		}
		if a.ApprovedBy == "" && pol.AllowsUnattended(a.Kind) && !a.Unattended {
			a.Unattended = true
		}
		if a.Unattended || a.ApprovedBy != "" {
			actor := &principal{admin: &store.AdminToken{ID: "plan", Name: fmt.Sprintf("unattended per policy version %d", polVersion)}}
			if a.ApprovedBy != "" && !a.Unattended {
				actor = &principal{admin: &store.AdminToken{ID: "plan", Name: "approved by " + a.ApprovedBy}}
			}
			if s.startAction(ctx, a, w, actor) {
				changed = append(changed, a)
			}
		}
	}
	s.putActions(ctx, changed)
}

// startAction starts a for its hosts that have not had it started yet and
// reports whether a changed.
func (s *Server) startAction(ctx context.Context, a *api.PlanAction, w *wanted, p *principal) bool {
	var fresh []string
	for _, id := range w.hosts {
		if !slices.Contains(a.Started, id) {
			fresh = append(fresh, id)
		}
	}
	if len(fresh) == 0 {
		return false
	}
	prevErr := a.Error
	a.Error = w.reason
	if w.reason != "" {
		return a.Error != prevErr
	}
	var refs []string
	var err error
	switch a.Kind {
	case policy.ActApplyLivePatch:
		refs, err = s.startLivePatch(ctx, a, w.kernel, fresh, p)
	default:
		// Hosts a kernel rollout of this release already takes there (an
		// operator's, or this action's before a restart) join none again.
		var joined []string
		refs, joined, fresh = s.inKernelRollout(a.Target, fresh)
		for _, r := range refs {
			if !slices.Contains(a.Refs, r) {
				a.Refs = append(a.Refs, r)
			}
		}
		a.Started = append(a.Started, joined...)
		refs = nil
		if len(fresh) > 0 {
			req := api.KernelRolloutRequest{Release: a.Target, Version: a.Version, Packages: a.Packages, Hosts: fresh, Reason: "live plan: " + a.Summary}
			if a.Kind == policy.ActEmergencyReboot {
				req.Emergency, req.Deadline = true, a.Deadline
			}
			var kr *krollout
			if kr, err = s.createKernelRollout(ctx, p, req); err == nil {
				refs = []string{kr.ID}
			}
		}
	}
	if err != nil {
		a.Error = err.Error()
		return a.Error != prevErr
	}
	a.Refs = append(a.Refs, refs...)
	a.Started = append(a.Started, fresh...)
	sort.Strings(a.Started)
	a.State, a.UpdatedAt = api.ActionStarted, s.now().UTC()
	detail := map[string]any{"key": a.Key, "hosts": len(fresh), "refs": refs, "unattended": a.Unattended, "approved_by": a.ApprovedBy}
	if err := s.audit(ctx, p, "plan.action.start", a.ID, detail); err != nil {
		s.log.Warn("audit of a started action not written", "action", a.ID, "err", err)
	}
	s.log.Info("plan action started", "action", a.ID, "key", a.Key, "hosts", len(fresh), "refs", refs)
	return true
}

// startLivePatch rolls the newest published bundle of the live patch for
// kernel out to hosts, one rollout per channel.
func (s *Server) startLivePatch(ctx context.Context, a *api.PlanAction, kernel string, hosts []string, p *principal) ([]string, error) {
	s.mu.RLock()
	var best *api.BundleInfo
	for _, b := range s.bundles {
		if b.Name != a.Target || b.KernelRelease != kernel {
			continue
		}
		if best == nil || b.Level > best.Level || b.Level == best.Level && b.Published.After(best.Published) {
			best = b
		}
	}
	byChannel := map[string][]string{}
	for _, id := range hosts {
		if h := s.hosts[id]; h != nil && h.RevokedAt.IsZero() {
			byChannel[h.Channel] = append(byChannel[h.Channel], id)
		}
	}
	s.mu.RUnlock()
	if best == nil {
		return nil, fmt.Errorf("live patch %s for kernel %s is not published to this server: publish its bundle (stent publish) and the action starts", a.Target, kernel)
	}
	channels := make([]string, 0, len(byChannel))
	for c := range byChannel {
		channels = append(channels, c)
	}
	sort.Strings(channels)
	var refs []string
	for _, c := range channels {
		ro, err := s.createRollout(ctx, p, api.RolloutRequest{Bundle: best.SHA256, Channel: c, OnlyHosts: byChannel[c]})
		if err != nil {
			return refs, err
		}
		refs = append(refs, ro.ID)
	}
	return refs, nil
}

func (s *Server) putActions(ctx context.Context, as []*api.PlanAction) {
	if len(as) == 0 {
		return
	}
	err := s.w.do(ctx, func(tx *store.Tx) error {
		for _, a := range as {
			if err := tx.PutPlanAction(ctx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("plan actions not stored", "err", err)
	}
}

func (s *Server) actionRoutes() []route {
	return []route{
		{"GET " + api.PathActions, api.RoleViewer, s.handleActions},
		{"POST " + api.PathActions + "/{id}/approve", api.RoleOperator, s.handleApproveAction},
	}
}

func (s *Server) handleActions(w http.ResponseWriter, r *http.Request) error {
	all := r.URL.Query().Get("all") != ""
	s.lp.mu.RLock()
	out := &api.ActionList{PolicyVersion: s.lp.polVersion, Unattended: append([]string{}, s.lp.pol.Unattended...), Actions: []api.PlanAction{}}
	s.lp.mu.RUnlock()
	s.ak.mu.Lock()
	for _, a := range s.ak.byID {
		if a.State == api.ActionDone && !all {
			continue
		}
		c := *a
		if len(c.Hosts) > api.MaxActionHosts {
			c.Hosts = c.Hosts[:api.MaxActionHosts]
		}
		if len(c.Started) > api.MaxActionHosts {
			c.Started = c.Started[:api.MaxActionHosts]
		}
		out.Actions = append(out.Actions, c)
	}
	s.ak.mu.Unlock()
	rank := map[string]int{api.ActionProposed: 0, api.ActionStarted: 1, api.ActionDone: 2}
	sort.Slice(out.Actions, func(i, j int) bool {
		a, b := out.Actions[i], out.Actions[j]
		if rank[a.State] != rank[b.State] {
			return rank[a.State] < rank[b.State]
		}
		return a.Key < b.Key
	})
	return writeJSON(w, http.StatusOK, out)
}

// handleApproveAction approves a proposed action and carries it out.
func (s *Server) handleApproveAction(w http.ResponseWriter, r *http.Request) error {
	var req api.ActionApproval
	if r.ContentLength != 0 {
		if err := readJSON(r, 64<<10, &req); err != nil {
			return err
		}
	}
	id, p := r.PathValue("id"), principalOf(r)
	s.ak.mu.Lock()
	defer s.ak.mu.Unlock()
	a := s.ak.byID[id]
	switch {
	case a == nil:
		return errorf(http.StatusNotFound, "not_found", "no action %s", id)
	case a.State == api.ActionDone:
		return errorf(http.StatusConflict, "conflict", "action %s is done: no host's plan has it any more", id)
	case a.ApprovedBy != "" || a.Unattended:
		return errorf(http.StatusConflict, "conflict", "action %s is approved already (state %s)", id, a.State)
	}
	now := s.now().UTC()
	a.ApprovedBy, a.ApprovedAt, a.UpdatedAt = p.actor(), now, now
	if err := s.audit(r.Context(), p, "plan.action.approve", a.ID, map[string]any{"key": a.Key, "hosts": a.HostCount, "reason": req.Reason}); err != nil {
		return internal(err)
	}
	kernel := ""
	s.lp.mu.RLock()
	for _, hid := range a.Hosts {
		if h := s.lp.hosts[hid]; h != nil && h.inv != nil {
			kernel = h.inv.Kernel.Release
			break
		}
	}
	s.lp.mu.RUnlock()
	reason := ""
	if a.Kind != policy.ActApplyLivePatch && !kernelRelease.MatchString(a.Target) {
		// Not resolved to a release at the last evaluation (a.Error says why).
		reason = a.Error
		if reason == "" {
			reason = "the kernel to boot is not known yet (" + a.Target + "): upgrade the package first, or start a kernel rollout of its release (stent fleet kernels)"
		}
	}
	s.startAction(r.Context(), a, &wanted{kernel: kernel, hosts: a.Hosts, reason: reason}, p)
	s.putActions(r.Context(), []*api.PlanAction{a})
	return writeJSON(w, http.StatusOK, a)
}
