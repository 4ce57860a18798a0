package server_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/fleetsim"
)

// TestHostSearch pages and filters hosts as the dashboard does, and
// refuses a malformed query naming the parameter.
func TestHostSearch(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.fleet(25, "stable", func(c *fleetsim.Config) {
		c.Labels = func(i int) map[string]string {
			if i%5 == 0 {
				return map[string]string{"role": "db"}
			}
			return map[string]string{"role": "web"}
		}
	})
	e.waitHosts(25)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		q     api.HostQuery
		total int
		page  int
		first string
	}{
		{"all, first page", api.HostQuery{Limit: 10}, 25, 10, "sim-00000"},
		{"all, last page", api.HostQuery{Offset: 20, Limit: 10}, 25, 5, "sim-00020"},
		{"past the end", api.HostQuery{Offset: 30}, 25, 0, ""},
		{"label", api.HostQuery{Labels: map[string]string{"role": "db"}}, 5, 5, "sim-00000"},
		{"label and name", api.HostQuery{Labels: map[string]string{"role": "web"}, Query: "SIM-0001"}, 8, 8, "sim-00011"},
		{"kernel", api.HostQuery{Kernel: kernel}, 25, 25, "sim-00000"},
		{"other kernel", api.HostQuery{Kernel: "5.10.0-1-amd64"}, 0, 0, ""},
		{"online", api.HostQuery{State: api.HostStateOnline}, 25, 25, "sim-00000"},
		{"revoked", api.HostQuery{State: api.HostStateRevoked}, 0, 0, ""},
		{"default limit", api.HostQuery{}, 25, 25, "sim-00000"},
	} {
		p, err := e.admin.SearchHosts(ctx, tc.q)
		if err != nil {
			t.Errorf("%s: SearchHosts(%+v) = %v", tc.name, tc.q, err)
			continue
		}
		first := ""
		if len(p.Hosts) > 0 {
			first = p.Hosts[0].Hostname
		}
		if p.Total != tc.total || len(p.Hosts) != tc.page || first != tc.first {
			t.Errorf("%s: SearchHosts(%+v) = total %d, %d hosts from %q; want %d, %d from %q", tc.name, tc.q, p.Total, len(p.Hosts), first, tc.total, tc.page, tc.first)
		}
	}
	p, err := e.admin.SearchHosts(ctx, api.HostQuery{Limit: 100000})
	if err != nil || p.Limit != api.MaxHostPage {
		t.Errorf("SearchHosts(limit 100000) = limit %d, %v; want capped at %d", p.Limit, err, api.MaxHostPage)
	}
	for _, bad := range []string{"?state=sleepy", "?label=nokey", "?offset=-1", "?limit=ten"} {
		err := e.admin.Do(ctx, http.MethodGet, api.PathHostSearch+bad, nil, nil)
		if !api.IsStatus(err, http.StatusBadRequest) {
			t.Errorf("GET %s%s = %v, want 400", api.PathHostSearch, bad, err)
		}
	}
	me, err := e.admin.Whoami(ctx)
	if err != nil || me.Role != api.RoleAdmin || me.Name != "bootstrap" {
		t.Errorf("Whoami() = %+v, %v; want the bootstrap admin token", me, err)
	}

	// Reboots of one host, and of the busy ones (none: nothing to do).
	rb, err := e.admin.SearchReboots(ctx, api.RebootQuery{Host: "sim-00003"})
	if err != nil || len(rb.Hosts) != 1 || rb.Hosts[0].Hostname != "sim-00003" || rb.Hosts[0].Busy() {
		t.Errorf("SearchReboots(host sim-00003) = %+v, %v; want that idle host alone", rb, err)
	}
	if rb, err := e.admin.SearchReboots(ctx, api.RebootQuery{Busy: true}); err != nil || len(rb.Hosts) != 0 {
		t.Errorf("SearchReboots(busy) = %+v, %v; want no host", rb, err)
	}
	if err := e.admin.Do(ctx, http.MethodGet, api.PathReboots+"?busy=maybe", nil, nil); !api.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("GET %s?busy=maybe = %v, want 400", api.PathReboots, err)
	}

	// The audit log, newest first and paged back.
	all := e.audit(api.AuditQuery{Limit: 1000})
	if len(all) < 25 {
		t.Fatalf("audit has %d entries, want at least the 25 enrollments", len(all))
	}
	newest := e.audit(api.AuditQuery{Newest: true, Limit: 10})
	if len(newest) != 10 || newest[0].ID != all[len(all)-1].ID || newest[9].ID != all[len(all)-10].ID {
		t.Errorf("Audit(newest 10) = ids %d..%d, want %d..%d", newest[0].ID, newest[len(newest)-1].ID, all[len(all)-1].ID, all[len(all)-10].ID)
	}
	older := e.audit(api.AuditQuery{Newest: true, Before: newest[9].ID, Limit: 10})
	if len(older) != 10 || older[0].ID != all[len(all)-11].ID {
		t.Errorf("Audit(newest before %d) starts at %d, want %d", newest[9].ID, older[0].ID, all[len(all)-11].ID)
	}
}
