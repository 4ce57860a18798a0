package server_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store/storetest"
)

// TestExposureHistory, on both engines: with a plan, the server records
// snapshots of the fleet's exposure that agree with the CVE index, at
// most one per interval, and only when the plan changed; they survive a
// restart; bad parameters are said clearly.
func TestExposureHistory(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			const interval = time.Second
			e := startEnv(t, envOpt{engine: eng, exposure: interval, feeds: []string{
				"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
				"cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
				"osv=" + filepath.Join(vulnData, "osv"),
			}})
			ctx := context.Background()
			// No plan yet (no host): nothing is recorded.
			time.Sleep(3 * interval)
			h, err := e.admin.ExposureHistory(ctx, time.Time{}, 0)
			e.ok(err)
			if len(h.Points) != 0 || time.Duration(h.Interval) != interval {
				t.Fatalf("ExposureHistory before any plan = %+v, want no point, interval %v", h, interval)
			}
			creds, _ := e.manualHosts("ex", 2)
			e.sendInventory(creds[0], fleetInventory(t, "web2", "ex-0"))
			e.sendInventory(creds[1], fleetInventory(t, "db1", "ex-1"))
			e.waitPlan("2 hosts planned", func(p *api.PlanPage, _ map[string]api.PlanHost) bool { return p.Hosts == 2 && p.Failed == 0 })
			var first api.ExposurePoint
			deadline := time.Now().Add(30 * time.Second)
			for {
				h, err = e.admin.ExposureHistory(ctx, time.Time{}, 0)
				e.ok(err)
				if len(h.Points) > 0 && h.Points[len(h.Points)-1].Hosts == 2 {
					first = h.Points[len(h.Points)-1]
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no snapshot of the 2 planned hosts after 30s: %+v", h)
				}
				time.Sleep(200 * time.Millisecond)
			}
			cves, err := e.admin.PlanCVEs(ctx, api.CVEQuery{})
			e.ok(err)
			pairs := 0
			for _, n := range first.Pairs {
				pairs += n
			}
			if first.CVEs != cves.Open || first.Exposed != cves.Hosts || pairs < first.CVEs || first.Overdue != cves.Overdue || first.Overdue > first.Exposed {
				t.Errorf("snapshot %+v; want %d CVEs on %d hosts, %d overdue (the CVE index's), pairs >= CVEs", first, cves.Open, cves.Hosts, cves.Overdue)
			}
			t.Logf("snapshot: %+v", first)
			// The plan does not change: no new snapshot, whatever the time.
			time.Sleep(3 * interval)
			h, err = e.admin.ExposureHistory(ctx, time.Time{}, 0)
			e.ok(err)
			n := len(h.Points)
			if !h.Points[n-1].At.Equal(first.At) {
				t.Errorf("a snapshot was taken while the plan did not change: %+v", h.Points[n-1])
			}
			// A new inventory changes the plan: a new snapshot.
			e.sendInventory(creds[1], fleetInventory(t, "app1", "ex-1"))
			e.waitFor(30*time.Second, "a new snapshot after a new inventory", func() bool {
				h, err = e.admin.ExposureHistory(ctx, time.Time{}, 0)
				e.ok(err)
				return h.Points[len(h.Points)-1].At.After(first.At)
			})
			for i := 1; i < len(h.Points); i++ {
				if d := h.Points[i].At.Sub(h.Points[i-1].At); d < interval {
					t.Errorf("snapshots %v and %v are %v apart, want at least %v", h.Points[i-1].At, h.Points[i].At, d, interval)
				}
			}
			// Since and limit.
			if hs, err := e.admin.ExposureHistory(ctx, first.At.Add(time.Second), 0); err != nil || len(hs.Points) == 0 || hs.Points[0].At.Before(first.At.Add(time.Second)) {
				t.Errorf("ExposureHistory(since) = %+v, %v", hs, err)
			}
			if hs, err := e.admin.ExposureHistory(ctx, time.Time{}, 1); err != nil || len(hs.Points) != 1 || !hs.Points[0].At.Equal(h.Points[len(h.Points)-1].At) {
				t.Errorf("ExposureHistory(limit 1) = %+v, %v; want the newest", hs, err)
			}
			for path, words := range map[string]string{
				api.PathExposure + "?since=yesterday": `since "yesterday": want a time as RFC 3339`,
				api.PathExposure + "?limit=-2":        `limit "-2"`,
			} {
				if err := e.admin.Do(ctx, http.MethodGet, path, nil, nil); !api.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), words) {
					t.Errorf("GET %s = %v, want 400 saying %s", path, err, words)
				}
			}
			// They are in the store: a restarted server has them.
			before := len(h.Points)
			e.restart(0)
			h, err = e.admin.ExposureHistory(ctx, time.Time{}, 0)
			e.ok(err)
			if len(h.Points) < before {
				t.Errorf("after a restart: %d snapshots, want %d or more", len(h.Points), before)
			}
		})
	}
}
