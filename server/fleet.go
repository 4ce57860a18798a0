package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// host is the in-memory state of one enrolled host. Guarded by Server.mu.
type host struct {
	store.Host
	desired api.DesiredState
	wake    chan struct{}  // closed (and replaced) when desired changes
	refs    []*rolloutHost // the host's rows in rollouts, in rollout order
}

// rollout is the in-memory state of one rollout. Its fields are guarded by
// Server.mu; op additionally serialises whole state changes (decide,
// persist, apply) between the engine and admin calls.
type rollout struct {
	store.Rollout
	op      sync.Mutex
	replace bool // the bundle is cumulative
	buildID string
	size    int64
	only    map[string]bool // OnlyHosts as a set; nil: no limit
	hosts   map[string]*rolloutHost
	waves   [][]*rolloutHost // by wave, 0 = canary
}

// rolloutHost is one host's row in one rollout.
type rolloutHost struct {
	store.RolloutHost
	r *rollout
	h *host
	// skip is set when the host's desired state does not carry this
	// rollout's patch because a later rollout or a higher cumulative level
	// replaced it; the rollout does not wait for such hosts.
	skip bool
}

// load fills memory from the store.
func (s *Server) load(ctx context.Context) error {
	set, err := s.st.Settings(ctx)
	if err != nil {
		return err
	}
	if v, ok := set["checkin_interval"]; ok {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			s.settings.CheckinInterval = api.Duration(d)
		}
	}
	bs, err := s.st.ListBundles(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		s.bundles[b.SHA256] = b
	}
	hs, err := s.st.ListHosts(ctx)
	if err != nil {
		return err
	}
	for _, h := range hs {
		h.Inventory = nil // served from the store; not worth the memory
		s.addHost(h)
	}
	rs, err := s.st.ListRollouts(ctx)
	if err != nil {
		return err
	}
	for _, sr := range rs {
		s.addRollout(sr)
		s.lastSeq = max(s.lastSeq, sr.Seq)
	}
	rhs, err := s.st.ListRolloutHosts(ctx, "")
	if err != nil {
		return err
	}
	for _, srh := range rhs {
		r, h := s.rolloutByID[srh.RolloutID], s.hosts[srh.HostID]
		if r == nil || h == nil {
			return fmt.Errorf("load: rollout host %s/%s refers to a missing rollout or host", srh.RolloutID, srh.HostID)
		}
		s.attach(r, h, srh)
	}
	if err := s.loadReboots(ctx); err != nil {
		return err
	}
	if err := s.loadPolicy(ctx); err != nil {
		return err
	}
	if err := s.loadActions(ctx); err != nil {
		return err
	}
	for _, h := range s.hosts {
		s.recompute(h)
	}
	return nil
}

// addHost puts a host in memory. Callers hold s.mu (or own s alone).
func (s *Server) addHost(sh *store.Host) *host {
	h := &host{Host: *sh, wake: make(chan struct{})}
	h.desired = api.DesiredState{ETag: etagOf(nil), Patches: []api.DesiredPatch{}}
	s.hosts[h.ID] = h
	s.hostsGen++
	if h.RevokedAt.IsZero() {
		s.byToken[h.TokenHash] = h
	}
	return h
}

func (s *Server) revokeHostLocked(id string, at time.Time) {
	h := s.hosts[id]
	if h == nil || !h.RevokedAt.IsZero() {
		return
	}
	h.RevokedAt = at
	s.hostsGen++
	delete(s.byToken, h.TokenHash)
	close(h.wake) // ends a held long-poll; the next call is refused
	h.wake = make(chan struct{})
}

func (s *Server) addRollout(sr *store.Rollout) *rollout {
	r := &rollout{Rollout: *sr, hosts: map[string]*rolloutHost{}, waves: make([][]*rolloutHost, len(sr.Waves)+1), only: onlySet(sr.OnlyHosts)}
	if b := s.bundles[sr.Bundle]; b != nil {
		r.replace, r.buildID, r.size = b.Replace, b.BuildID, b.Size
	}
	s.rollouts = append(s.rollouts, r)
	s.rolloutByID[r.ID] = r
	return r
}

// onlySet is a rollout's OnlyHosts as a set, nil for none.
func onlySet(ids []string) map[string]bool {
	if len(ids) == 0 {
		return nil
	}
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// attach links a host's rollout row into both sides.
func (s *Server) attach(r *rollout, h *host, srh *store.RolloutHost) *rolloutHost {
	rh := &rolloutHost{RolloutHost: *srh, r: r, h: h}
	r.hosts[h.ID] = rh
	w := min(max(rh.Wave, 0), len(r.waves)-1)
	r.waves[w] = append(r.waves[w], rh)
	h.refs = append(h.refs, rh)
	sort.SliceStable(h.refs, func(i, j int) bool { return h.refs[i].r.Seq < h.refs[j].r.Seq })
	return rh
}

// eligible reports whether h is in r's target: same channel, every
// selector label, the bundle's kernel (and build id when both know it).
func eligible(r *rollout, h *host) bool {
	if !h.RevokedAt.IsZero() || h.Channel != r.Channel || h.KernelRelease != r.KernelRelease {
		return false
	}
	if r.buildID != "" && h.BuildID != "" && r.buildID != h.BuildID {
		return false
	}
	if r.only != nil && !r.only[h.ID] {
		return false
	}
	return hasLabels(h.Labels, r.Selector)
}

// hasLabels reports whether labels has every key=value of selector.
func hasLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// adoptLocked puts h into the live rollouts it is eligible for but not part
// of yet (it enrolled or changed kernel after they started), in their
// current wave, and returns the rows to persist.
func (s *Server) adoptLocked(h *host, now time.Time) []store.RolloutHost {
	var out []store.RolloutHost
	for _, r := range s.rollouts {
		if r.State != api.RolloutRunning && r.State != api.RolloutCompleted && r.State != api.RolloutPaused {
			continue
		}
		if _, ok := r.hosts[h.ID]; ok || !eligible(r, h) {
			continue
		}
		srh := store.RolloutHost{RolloutID: r.ID, HostID: h.ID, Wave: r.Wave, State: api.HostPending, UpdatedAt: now}
		s.attach(r, h, &srh)
		out = append(out, srh)
	}
	return out
}

// recompute derives h's desired state from the rollouts it is in, wakes
// its long-poll if that changed, and reports whether it did.
//
// Per patch name the latest rollout wins (so a revert overrides an earlier
// apply); among cumulative patches for the host's kernel only the highest
// level is kept, since loading it replaces the others.
func (s *Server) recompute(h *host) bool {
	type cand struct {
		p  api.DesiredPatch
		rh *rolloutHost
	}
	byName := map[string]cand{}
	for _, rh := range h.refs {
		r := rh.r
		rh.skip = false
		action := ""
		switch r.State {
		case api.RolloutReverting, api.RolloutReverted:
			if rh.Wave <= r.Wave || rh.State != api.HostPending {
				action = api.ActionRevert
			}
		case api.RolloutRunning, api.RolloutCompleted:
			if rh.Wave <= r.Wave {
				action = api.ActionApply
			}
		case api.RolloutPaused, api.RolloutHalted:
			if rh.State == api.HostApplied || rh.State == api.HostHealthy {
				action = api.ActionApply
			}
		}
		if action == "" || (action == api.ActionApply && h.KernelRelease != r.KernelRelease) {
			continue
		}
		p := api.DesiredPatch{Rollout: r.ID, Action: action, Name: r.Name, Level: r.Level, KernelRelease: r.KernelRelease}
		if action == api.ActionApply {
			p.Bundle, p.Size = r.Bundle, r.size
		}
		if prev, ok := byName[r.Name]; ok {
			prev.rh.skip = true
		}
		byName[r.Name] = cand{p, rh}
	}
	best := map[string]cand{}
	for _, c := range byName {
		if c.p.Action != api.ActionApply || !c.rh.r.replace {
			continue
		}
		b, ok := best[c.p.KernelRelease]
		if !ok || c.p.Level > b.p.Level || (c.p.Level == b.p.Level && c.rh.r.Seq > b.rh.r.Seq) {
			best[c.p.KernelRelease] = c
		}
	}
	patches := make([]api.DesiredPatch, 0, len(byName))
	for _, c := range byName {
		if c.p.Action == api.ActionApply && c.rh.r.replace && best[c.p.KernelRelease].rh != c.rh {
			c.rh.skip = true
			continue
		}
		patches = append(patches, c.p)
	}
	// Reverts first, then applies by level, so an agent working down the
	// list never loads something it is about to remove.
	sort.Slice(patches, func(i, j int) bool {
		a, b := patches[i], patches[j]
		if a.Action != b.Action {
			return a.Action == api.ActionRevert
		}
		if a.Level != b.Level {
			return a.Level < b.Level
		}
		return a.Name < b.Name
	})
	kernel := s.desiredKernel(h)
	etag := withKernel(etagOf(patches), kernel)
	if etag == h.desired.ETag {
		return false
	}
	h.desired = api.DesiredState{ETag: etag, Patches: patches, Kernel: kernel}
	close(h.wake)
	h.wake = make(chan struct{})
	return true
}

func etagOf(p []api.DesiredPatch) string {
	if p == nil {
		p = []api.DesiredPatch{}
	}
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// online reports whether h checked in recently enough.
func (s *Server) online(h *host, now time.Time) bool {
	return !h.LastSeen.IsZero() && now.Sub(h.LastSeen) <= s.offlineAfter()
}

// offlineAfter is how long a silent host still counts as online: two
// check-in intervals and some slack.
func (s *Server) offlineAfter() time.Duration {
	return 2*time.Duration(s.settings.CheckinInterval) + 30*time.Second
}

func hasPatch(ps []api.PatchState, name string) (enabled, transition bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Enabled, p.Transition
		}
	}
	return false, false
}

func (h *host) api(online bool) api.Host {
	return api.Host{
		ID: h.ID, Hostname: h.Hostname, Channel: h.Channel, Labels: h.Labels, KernelRelease: h.KernelRelease,
		AgentVersion: h.AgentVersion, EnrolledAt: h.EnrolledAt, LastSeen: h.LastSeen, Online: online,
		Health: h.Health, Revoked: !h.RevokedAt.IsZero(), Patches: h.Patches,
	}
}
