package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store/storetest"
)

// manualHosts enrolls n hosts named prefix-0..n-1 through one token and
// checks each in once with the test kernel; it returns their clients.
func (e *env) manualHosts(prefix string, n int) ([]*agent.Credentials, []*api.Client) {
	e.t.Helper()
	tok := e.enrollToken("stable", 0)
	var creds []*agent.Credentials
	var cls []*api.Client
	for i := range n {
		c, err := e.enroll(tok, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			e.t.Fatal(err)
		}
		cl := e.client(c.Credential)
		if err := cl.Do(context.Background(), http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Health: api.HealthOK}, &api.SyncResponse{}); err != nil {
			e.t.Fatal(err)
		}
		creds, cls = append(creds, c), append(cls, cl)
	}
	return creds, cls
}

// TestReportsFromUnreleasedHosts: a host that is in a rollout but not yet
// released reports apply/failed; its row stays pending and the rollout
// counts no failure (issue 12, part 7). A report about a rollout the host
// is not part of is refused (part 1).
func TestReportsFromUnreleasedHosts(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			e := startEnv(t, envOpt{engine: eng})
			ctx := context.Background()
			creds, cls := e.manualHosts("rel", 3)
			b := e.publish("lp_rel", 1, true, 512)
			var r api.Rollout
			e.do(http.MethodPost, api.PathRollouts, api.RolloutRequest{Bundle: b.SHA256, Canary: 1, MaxFailurePct: ptr(50.0)}, &r)
			r = e.waitState(r.ID, api.RolloutRunning, 10*time.Second)
			unreleased := -1
			for _, rh := range r.Hosts {
				if rh.Wave > r.Wave {
					for i, c := range creds {
						if c.HostID == rh.HostID {
							unreleased = i
						}
					}
				}
			}
			if unreleased < 0 {
				t.Fatalf("rollout %+v has no unreleased host", r)
			}
			err := cls[unreleased].Do(ctx, http.MethodPost, api.PathReport, api.Report{RequestID: "early", Action: api.ActionApply, Rollout: r.ID,
				Name: "lp_rel", Bundle: b.SHA256, Result: api.ResultFailed, Error: "made up", At: time.Now()}, &api.ReportResponse{})
			if err != nil {
				t.Fatalf("report from an unreleased host: %v", err)
			}
			r = e.rollout(r.ID)
			for _, rh := range r.Hosts {
				if rh.HostID == creds[unreleased].HostID && rh.State != api.HostPending {
					t.Errorf("unreleased host's row after its apply/failed report: %s (%s), want pending", rh.State, rh.Error)
				}
			}
			if r.Counts.Failed != 0 {
				t.Errorf("rollout counts after a report from an unreleased host: %+v, want no failure", r.Counts)
			}
			// A rollout the host is not in.
			err = cls[0].Do(ctx, http.MethodPost, api.PathReport, api.Report{RequestID: "other", Action: api.ActionApply, Rollout: "r_0000000000000000",
				Result: api.ResultOK, At: time.Now()}, &api.ReportResponse{})
			if got := status(err); got != http.StatusNotFound {
				t.Errorf("report about a rollout the host is not in: status %d (%v), want 404", got, err)
			}
		})
	}
}

// TestCheckinInventoryValidated: an inventory the planner cannot read is
// refused at check-in with a 400 naming the field, and not stored; one it
// can read is stored (issue 12, part 2).
func TestCheckinInventoryValidated(t *testing.T) {
	e := startEnv(t, envOpt{})
	ctx := context.Background()
	_, cls := e.manualHosts("inv", 1)
	good, err := os.ReadFile("../policy/testdata/fleet/web1.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`123`, `{"schema_version":1,"hostname":"x"}`, `"text"`, `{"schema_version":1,"os":{"id":7}}`} {
		err := cls[0].Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Inventory: json.RawMessage(bad)}, &api.SyncResponse{})
		if got := status(err); got != http.StatusBadRequest || !strings.Contains(err.Error(), "inventory") {
			t.Errorf("check-in with inventory %s: status %d (%v), want 400 naming the inventory", bad, got, err)
		}
	}
	var n int
	_, err = e.admin.Inventories(ctx, nil, func(h *api.HostInventory) error {
		if len(h.Inventory) > 0 {
			n++
		}
		return nil
	})
	if err != nil || n != 0 {
		t.Errorf("inventories after refused check-ins: %d stored (%v), want 0", n, err)
	}
	if err := cls[0].Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Inventory: good}, &api.SyncResponse{}); err != nil {
		t.Errorf("check-in with a good inventory: %v", err)
	}
}
