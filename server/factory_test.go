package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// TestFactoryState: workers put uploads and jobs; a building job is one
// worker's at a time; each state change is audited with the signing key;
// viewers read and cannot write; bad input is refused and changes nothing.
// On both engines.
func TestFactoryState(t *testing.T) {
	for _, eng := range []string{store.SQLite, store.Postgres} {
		t.Run(eng, func(t *testing.T) {
			e := startEnv(t, envOpt{engine: eng})
			ctx := context.Background()
			tok := func(name, role string) *api.Client {
				r, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: name, Role: role})
				e.ok(err)
				return e.client(r.Secret)
			}
			w1, w2, viewer := tok("factory-1", api.RoleOperator), tok("factory-2", api.RoleOperator), tok("v", api.RoleViewer)

			up := api.FactoryUpload{Version: "6.1.192-3", Previous: "6.1.192-2",
				Fixes: []api.FactoryFix{{Index: 1, Upload: "6.1.192-3", Summary: "nfsd: preflight", CVEs: []string{"CVE-2026-99362"}, Files: []string{"fs/nfsd/nfs4state.c"}, Origin: "source-diff"}},
				Steps: []api.FactoryStep{{Name: "diff", Duration: 4 * time.Second}}}
			job := api.FactoryJob{ID: "6.1.192-3/6.1.0-56-amd64", Upload: "6.1.192-3", Kernel: "6.1.0-56-amd64", Hosts: 2, State: api.JobBuilding, Fixes: []int{1}}

			// A job before its upload, and malformed ones, are refused.
			if _, err := w1.PutFactoryJob(ctx, job); !api.IsStatus(err, http.StatusBadRequest) {
				t.Errorf("PutFactoryJob(before its upload) = %v, want 400", err)
			}
			bad := up
			bad.Previous = "not a version"
			if _, err := w1.PutFactoryUpload(ctx, bad); !api.IsStatus(err, http.StatusBadRequest) {
				t.Errorf("PutFactoryUpload(bad previous) = %v, want 400", err)
			}
			if _, err := viewer.PutFactoryUpload(ctx, up); !api.IsStatus(err, http.StatusForbidden) {
				t.Errorf("viewer PutFactoryUpload = %v, want 403", err)
			}

			got, err := w1.PutFactoryUpload(ctx, up)
			e.ok(err)
			if got.SeenAt.IsZero() || got.Worker == "" {
				t.Errorf("PutFactoryUpload = %+v, want SeenAt and the worker set", got)
			}
			for _, j := range []api.FactoryJob{
				func() api.FactoryJob { j := job; j.State = "cooking"; return j }(),
				func() api.FactoryJob { j := job; j.ID = "6.1.192-3/other"; return j }(),
			} {
				if _, err := w1.PutFactoryJob(ctx, j); !api.IsStatus(err, http.StatusBadRequest) {
					t.Errorf("PutFactoryJob(%s, state %s) = %v, want 400", j.ID, j.State, err)
				}
			}
			_, err = w1.PutFactoryJob(ctx, job)
			e.ok(err)
			// A second worker cannot take the job while the first builds it.
			if _, err := w2.PutFactoryJob(ctx, job); !api.IsStatus(err, http.StatusConflict) {
				t.Errorf("second worker's claim = %v, want 409", err)
			}
			done := job
			done.State, done.Bundle, done.KeyID, done.Level = api.JobPublished, "ab12", "factory-key-id", 2
			done.Steps = []api.FactoryStep{{Name: "build", Duration: 3 * time.Minute}, {Name: "smoke", Duration: time.Minute}}
			_, err = w1.PutFactoryJob(ctx, done)
			e.ok(err)

			st, err := viewer.FactoryStatus(ctx)
			e.ok(err)
			if len(st.Uploads) != 1 || len(st.Uploads[0].Fixes) != 1 || st.Uploads[0].Fixes[0].CVEs[0] != "CVE-2026-99362" {
				t.Errorf("FactoryStatus uploads = %+v", st.Uploads)
			}
			if len(st.Jobs) != 1 || st.Jobs[0].State != api.JobPublished || len(st.Jobs[0].Steps) != 2 || st.Jobs[0].CreatedAt.IsZero() {
				t.Errorf("FactoryStatus jobs = %+v", st.Jobs)
			}
			audit, err := e.admin.Audit(ctx, api.AuditQuery{Action: "factory.job"})
			e.ok(err)
			var states []string
			for _, a := range audit {
				states = append(states, a.Target+" "+string(a.Detail))
			}
			if len(audit) != 2 {
				t.Fatalf("audit factory.job = %q, want building then published", states)
			}
			found := false
			for _, a := range audit {
				if string(a.Detail) != "" && strings.Contains(string(a.Detail), `"key_id":"factory-key-id"`) && strings.Contains(string(a.Detail), `"state":"published"`) {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit entry names the signing key of the published bundle: %q", states)
			}
		})
	}
}
