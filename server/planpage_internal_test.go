package server

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

// writePlanPage writes, a host at a time, the bytes writeJSON writes, even
// when a string holds what it looks for.
func TestWritePlanPage(t *testing.T) {
	pol := policy.Default()
	pol.Exceptions = append(pol.Exceptions, policy.Exception{CVEs: []string{"*"}, Hosts: []string{"x"}, Reason: `a "page":[] <here>`, Expires: time.Unix(2e9, 0).UTC()})
	for _, hosts := range [][]api.PlanHost{nil, {}, {{HostID: "h_1", Error: `"page":[]`}}, {
		{HostID: "h_1", Labels: map[string]string{"role": "web"}, Plan: &policy.HostPlan{Hostname: "web1", Actions: []policy.Action{{Kind: "reboot", Summary: "a & b"}}}},
		{HostID: "h_2", Error: "no plan"},
	}} {
		page := &api.PlanPage{FeedGeneration: 3, Policy: pol, Page: hosts, Next: "h_2", Hosts: 2}
		if hosts == nil {
			page.Page = []api.PlanHost{}
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(page); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		if err := writePlanPage(rec, page); err != nil {
			t.Fatal(err)
		}
		if got := rec.Body.String(); got != want.String() {
			t.Errorf("writePlanPage(%d hosts) =\n%s\nwant\n%s", len(hosts), got, want.String())
		}
		if len(page.Page) != len(hosts) {
			t.Errorf("writePlanPage changed the page's hosts")
		}
	}
}

// writePlanReport writes, a host at a time, the bytes writeJSON writes.
func TestWritePlanReport(t *testing.T) {
	for _, hosts := range [][]policy.HostReport{nil, {}, {
		{Hostname: `"hosts":[]`, Status: policy.Breached, Evidence: []string{"a <b> & c"}},
		{Hostname: "db1", Rules: []policy.RuleReport{{Rule: "urgent", Status: policy.Compliant}}},
	}} {
		rep := &api.PlanReport{FeedGeneration: 2, Report: &policy.Report{SchemaVersion: 1, Hosts: hosts,
			Fleet: []policy.FleetRule{{Rule: "urgent", Hosts: map[string]int{"breached": 1}}}}, Unplanned: []api.PlanHost{{HostID: "h_9", Error: "x"}}}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(rep); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		if err := writePlanReport(rec, rep); err != nil {
			t.Fatal(err)
		}
		if got := rec.Body.String(); got != want.String() {
			t.Errorf("writePlanReport(%d hosts) =\n%s\nwant\n%s", len(hosts), got, want.String())
		}
	}
}
