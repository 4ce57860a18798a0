package server

import (
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
)

// searchRoutes are the calls the web dashboard pages with: who the token
// is, and one bounded page of hosts.
func (s *Server) searchRoutes() []route {
	return []route{
		{"GET " + api.PathWhoami, api.RoleViewer, s.handleWhoami},
		{"GET " + api.PathHostSearch, api.RoleViewer, s.handleHostSearch},
	}
}

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) error {
	a := principalOf(r).admin
	return writeJSON(w, http.StatusOK, api.Principal{TokenID: a.ID, Name: a.Name, Role: a.Role, ExpiresAt: a.ExpiresAt})
}

// parseHostQuery reads a PathHostSearch query, refusing what it cannot
// use with the parameter's name.
func parseHostQuery(r *http.Request) (api.HostQuery, error) {
	v := r.URL.Query()
	q := api.HostQuery{Query: v.Get("q"), Kernel: v.Get("kernel"), State: v.Get("state")}
	for _, l := range v["label"] {
		k, val, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return q, errorf(http.StatusBadRequest, "bad_request", "label %q: want key=value", l)
		}
		if q.Labels == nil {
			q.Labels = map[string]string{}
		}
		q.Labels[k] = val
	}
	if q.State != "" && !slices.Contains(api.HostStates, q.State) {
		return q, errorf(http.StatusBadRequest, "bad_request", "state %q: want one of %s", q.State, strings.Join(api.HostStates, ", "))
	}
	for name, p := range map[string]*int{"offset": &q.Offset, "limit": &q.Limit} {
		if s := v.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return q, errorf(http.StatusBadRequest, "bad_request", "%s %q: want a whole number, 0 or more", name, s)
			}
			*p = n
		}
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, api.MaxHostPage)
	return q, nil
}

// handleHostSearch answers one page of hosts: it filters the hosts in
// memory and builds answers for the page only, so that a 10,000-host
// fleet costs one pass over the map and a sort of the matches.
func (s *Server) handleHostSearch(w http.ResponseWriter, r *http.Request) error {
	q, err := parseHostQuery(r)
	if err != nil {
		return err
	}
	needle := strings.ToLower(q.Query)
	now := s.now()
	s.mu.RLock()
	type match struct {
		key string
		h   *host
	}
	var ms []match
	for _, h := range s.hosts {
		if needle != "" && !strings.Contains(strings.ToLower(h.Hostname), needle) && !strings.Contains(h.ID, needle) {
			continue
		}
		if q.Kernel != "" && h.KernelRelease != q.Kernel {
			continue
		}
		if !labelsMatch(h.Labels, q.Labels) || !s.hostInState(h, q.State, now) {
			continue
		}
		ms = append(ms, match{h.Hostname + "\x00" + h.ID, h})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].key < ms[j].key })
	page := api.HostPage{Hosts: []api.Host{}, Total: len(ms), Offset: q.Offset, Limit: q.Limit}
	for i := q.Offset; i < len(ms) && i < q.Offset+q.Limit; i++ {
		page.Hosts = append(page.Hosts, ms[i].h.api(s.online(ms[i].h, now)))
	}
	s.mu.RUnlock()
	return writeJSON(w, http.StatusOK, page)
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// hostInState reports whether h is in state (one of api.HostStates; ""
// matches every host). Revoked hosts are only in HostStateRevoked, as
// FleetStatus counts them. Callers hold s.mu.
func (s *Server) hostInState(h *host, state string, now time.Time) bool {
	revoked := !h.RevokedAt.IsZero()
	switch state {
	case "":
		return true
	case api.HostStateRevoked:
		return revoked
	case api.HostStateOnline:
		return !revoked && s.online(h, now)
	case api.HostStateOffline:
		return !revoked && !s.online(h, now)
	case api.HostStateHealthy:
		return !revoked && h.Health == api.HealthOK
	case api.HostStateDegraded:
		return !revoked && h.Health == api.HealthDegraded
	}
	return false
}
