package server_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
)

// The fleet's open CVEs against the live plan of real feeds and
// inventories: every count is checked against the hosts' own plans (read
// with GET /v1/admin/plan), as are each host's fix path and deadline;
// filters, pages and their bounds, a CVE nobody has, a viewer.
func TestPlanCVEs(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: []string{
		"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
		"cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
		"osv=" + filepath.Join(vulnData, "osv"),
		"nvd=" + filepath.Join(vulnData, "nvd"),
	}})
	ctx := context.Background()
	creds, _ := e.manualHosts("cv", 3)
	e.sendInventory(creds[0], fleetInventory(t, "web2", "cv-0"))
	e.sendInventory(creds[1], fleetInventory(t, "web2", "cv-1"))
	e.sendInventory(creds[2], fleetInventory(t, "db1", "cv-2"))
	_, hs := e.waitPlan("3 hosts planned", func(p *api.PlanPage, _ map[string]api.PlanHost) bool {
		return p.Hosts == 3 && p.Failed == 0 && p.FeedGeneration > 0
	})

	// What the hosts' plans say, computed here: per CVE the exposed hosts
	// and each one's nearest deadline.
	type want struct {
		hosts    map[string]bool
		deadline map[string]time.Time
	}
	wants := map[string]*want{}
	for id, h := range hs {
		for _, f := range h.Plan.Exposure {
			if !f.State.Exposed() {
				continue
			}
			w := wants[f.CVE]
			if w == nil {
				w = &want{hosts: map[string]bool{}, deadline: map[string]time.Time{}}
				wants[f.CVE] = w
			}
			w.hosts[id] = true
		}
		for _, rr := range h.Plan.Compliance {
			for _, it := range rr.Items {
				if w := wants[it.CVE]; w != nil && !it.Deadline.IsZero() {
					if d, ok := w.deadline[id]; !ok || it.Deadline.Before(d) {
						w.deadline[id] = it.Deadline
					}
				}
			}
		}
	}
	if len(wants) == 0 {
		t.Fatal("no host of the plan is exposed to anything: the test fleet should be")
	}
	// Hosts past a deadline for an open CVE.
	overdue := map[string]bool{}
	for _, w := range wants {
		for id, d := range w.deadline {
			if d.Before(planNow) {
				overdue[id] = true
			}
		}
	}

	// Every CVE, a page of MaxCVELimit at a time.
	all, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Limit: api.MaxCVELimit})
	e.ok(err)
	if all.Total != len(wants) || all.Open != len(wants) || len(all.CVEs) != min(len(wants), api.MaxCVELimit) || all.Hosts != 3 || all.Overdue != len(overdue) {
		t.Fatalf("PlanCVEs() = total %d, open %d, %d rows, %d hosts, %d overdue; want %d CVEs on 3 hosts, %d overdue", all.Total, all.Open, len(all.CVEs), all.Hosts, all.Overdue, len(wants), len(overdue))
	}
	for off := len(all.CVEs); off < all.Total; off += api.MaxCVELimit {
		p, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Offset: off, Limit: api.MaxCVELimit})
		e.ok(err)
		all.CVEs = append(all.CVEs, p.CVEs...)
	}
	if len(all.CVEs) != all.Total {
		t.Fatalf("pages of PlanCVEs gave %d CVEs, want %d", len(all.CVEs), all.Total)
	}
	t.Logf("%d open CVEs; first %+v", all.Total, all.CVEs[0])
	rank := map[string]int{"critical": 5, "high": 4, "medium": 3, "low": 2, "none": 1, "unknown": 0}
	var withDeadline string
	most := 0
	for i, c := range all.CVEs {
		w := wants[c.CVE]
		if w == nil {
			t.Errorf("PlanCVEs lists %s, which no host's plan has open", c.CVE)
			continue
		}
		sum := 0
		for _, n := range c.Paths {
			sum += n
		}
		if c.Hosts != len(w.hosts) || sum != c.Hosts {
			t.Errorf("%s: %d hosts, paths %v; want %d hosts, paths summing to them", c.CVE, c.Hosts, c.Paths, len(w.hosts))
		}
		if i > 0 && rank[c.Severity] > rank[all.CVEs[i-1].Severity] {
			t.Errorf("%s (%s) after %s (%s): want the most severe first", c.CVE, c.Severity, all.CVEs[i-1].CVE, all.CVEs[i-1].Severity)
		}
		var nearest *time.Time
		for _, d := range w.deadline {
			if nearest == nil || d.Before(*nearest) {
				nearest = &d
			}
		}
		if (nearest == nil) != (c.Deadline == nil) || (nearest != nil && !nearest.Equal(*c.Deadline)) {
			t.Errorf("%s: deadline %v, want %v", c.CVE, c.Deadline, nearest)
		}
		if c.Deadline != nil && c.Hosts > most {
			withDeadline, most = c.CVE, c.Hosts
		}
	}
	if most < 2 {
		t.Fatal("no CVE open on two hosts or more with a deadline: the test needs one")
	}

	// One CVE: each host, its fix path as its finding says, its deadline.
	d, err := e.admin.PlanCVE(ctx, strings.ToLower(withDeadline), 0, 0)
	e.ok(err)
	if d.CVE != withDeadline || len(d.Page) != most {
		t.Fatalf("PlanCVE(%s) = %s with %d hosts, want %d", withDeadline, d.CVE, len(d.Page), most)
	}
	t.Logf("%s: %+v", withDeadline, d.Page)
	for _, h := range d.Page {
		var state, path string
		for _, f := range hs[h.HostID].Plan.Exposure {
			if f.CVE == withDeadline {
				state = string(f.State)
				switch {
				case f.AvailablePatch != "":
					path = api.FixLivePatch
				case f.State == "fixed-installed":
					path = api.FixReboot
				case f.State == "update-needed":
					path = api.FixUpdate
				}
			}
		}
		wd := wants[withDeadline].deadline[h.HostID]
		if h.State != state || (path != "" && h.Fix != path) || h.Deadline == nil || !h.Deadline.Equal(wd) || h.Overdue != wd.Before(planNow) {
			t.Errorf("%s on %s = %+v; want state %s, fix %q, deadline %v", withDeadline, h.Hostname, h, state, path, wd)
		}
	}
	// Its hosts a page of one at a time, and past the end.
	seen := map[string]bool{}
	for off := 0; off < most; off++ {
		p, err := e.admin.PlanCVE(ctx, withDeadline, off, 1)
		e.ok(err)
		if len(p.Page) != 1 || seen[p.Page[0].HostID] {
			t.Fatalf("PlanCVE(offset %d, limit 1) = %+v, want one new host", off, p.Page)
		}
		seen[p.Page[0].HostID] = true
	}
	if p, err := e.admin.PlanCVE(ctx, withDeadline, most, 1); err != nil || len(p.Page) != 0 || p.Hosts != most {
		t.Errorf("PlanCVE(offset %d) = %+v, %v; want no row, %d hosts", most, p, err, most)
	}

	// Filters and pages of the list.
	sev := all.CVEs[0].Severity
	bySev, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Severity: sev, Limit: api.MaxCVELimit})
	e.ok(err)
	n := 0
	for _, c := range all.CVEs {
		if c.Severity == sev {
			n++
		}
	}
	if bySev.Total != n {
		t.Errorf("PlanCVEs(severity %s).Total = %d, want %d", sev, bySev.Total, n)
	}
	one, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Query: strings.ToLower(withDeadline[4:])})
	e.ok(err)
	if one.Total < 1 || one.CVEs[0].CVE != withDeadline && !strings.Contains(one.CVEs[0].CVE, withDeadline[4:]) {
		t.Errorf("PlanCVEs(q %s) = %+v, want %s", withDeadline[4:], one.CVEs, withDeadline)
	}
	second, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Offset: 1, Limit: 1})
	e.ok(err)
	if len(second.CVEs) != 1 || second.CVEs[0].CVE != all.CVEs[1].CVE || second.Total != all.Total {
		t.Errorf("PlanCVEs(offset 1, limit 1) = %+v, want %s", second.CVEs, all.CVEs[1].CVE)
	}
	past, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Offset: all.Total + 10})
	e.ok(err)
	if len(past.CVEs) != 0 || past.Total != all.Total {
		t.Errorf("PlanCVEs(offset past the end) = %d rows, total %d; want none of %d", len(past.CVEs), past.Total, all.Total)
	}
	if big, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Limit: 100000}); err != nil || big.Limit != api.MaxCVELimit {
		t.Errorf("PlanCVEs(limit 100000).Limit = %v, %v; want %d", big, err, api.MaxCVELimit)
	}

	// Bad input: said clearly, 400; a CVE no host has: 404.
	for path, words := range map[string]string{
		api.PathPlanCVEs + "?severity=urgent": `severity "urgent": want one of critical`,
		api.PathPlanCVEs + "?fix=magic":       `fix "magic": want one of live-patch`,
		api.PathPlanCVEs + "?offset=-1":       `offset "-1"`,
		api.PathPlanCVEs + "?limit=0":         `limit "0"`,
		api.PathPlanCVE + "X?limit=x":         `limit "x"`,
	} {
		err := e.admin.Do(ctx, http.MethodGet, path, nil, nil)
		if !api.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), words) {
			t.Errorf("GET %s = %v, want 400 saying %s", path, err, words)
		}
	}
	if _, err := e.admin.PlanCVE(ctx, "CVE-1999-0001", 0, 0); !api.IsStatus(err, http.StatusNotFound) || !strings.Contains(err.Error(), "no planned host is exposed to CVE-1999-0001") {
		t.Errorf("PlanCVE(CVE-1999-0001) = %v, want 404 saying no host is exposed", err)
	}

	// A viewer reads them.
	tv, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "v", Role: api.RoleViewer})
	e.ok(err)
	if _, err := e.client(tv.Secret).PlanCVE(ctx, withDeadline, 0, 0); err != nil {
		t.Errorf("viewer PlanCVE = %v", err)
	}
}
