package server

import (
	"strings"

	"github.com/stent-dev/stent/policy"
)

// The live plan's maintenance windows are the reboot scheduler's: a host
// that a window set with "stent fleet windows" covers (windowOf: the first
// by name whose selector its labels match) is planned with that window
// alone, so the plan's "reboot in window" names the window and opening its
// lease will wait for. A host no server window covers keeps the policy
// file's windows (their host name globs). Both are parsed by
// policy.ParseWindow: one grammar.

// planWindows returns, per host id, the server's window that covers it,
// nil where none does or when the server has no window.
func (s *Server) planWindows(ids []string) []*policy.Window {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.rb.windows) == 0 {
		return nil
	}
	out := make([]*policy.Window, len(ids))
	for i, id := range ids {
		if h := s.hosts[id]; h != nil {
			if w := s.windowOf(h); w != nil {
				sched := w.sched
				out[i] = &sched
			}
		}
	}
	return out
}

// windowPolicy returns pol with the windows of the hosts named names (one
// policy.Plan call's, so each name once): wins[i], the server's window of
// host i, when set, else the policy's windows that cover it. pol itself
// when the server has no window.
func windowPolicy(pol *policy.Policy, names []string, wins []*policy.Window) *policy.Policy {
	if wins == nil {
		return pol
	}
	var order []*policy.Window
	byName := map[string]*policy.Window{}
	add := func(w *policy.Window, key, host string) {
		c := byName[key]
		if c == nil {
			cp := *w
			cp.Hosts = nil
			c = &cp
			byName[key] = c
			order = append(order, c)
		}
		c.Hosts = append(c.Hosts, globQuote(host))
	}
	for i, name := range names {
		if w := wins[i]; w != nil {
			add(w, "server:"+w.Name, name)
			continue
		}
		for j := range pol.Windows {
			if f := &pol.Windows[j]; f.AppliesTo(name) {
				add(f, "policy:"+f.Name, name)
			}
		}
	}
	cp := *pol
	cp.Windows = make([]policy.Window, 0, len(order))
	for _, w := range order {
		cp.Windows = append(cp.Windows, *w) // each with its hosts: never empty, never "every host"
	}
	return &cp
}

// globQuote quotes a host name for path.Match.
func globQuote(s string) string {
	if !strings.ContainsAny(s, `*?[\`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
