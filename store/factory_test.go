package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// TestFactory: uploads and jobs round-trip on both engines, keep their
// first SeenAt and CreatedAt, and list in order.
func TestFactory(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		u := &api.FactoryUpload{Version: "6.1.192-3", Previous: "6.1.192-2", SeenAt: t0, UpdatedAt: t0,
			Fixes: []api.FactoryFix{{Index: 1, Upload: "6.1.192-3", Summary: "nfsd: preflight", CVEs: []string{"CVE-2026-99362"}, Files: []string{"fs/nfsd/nfs4state.c"}, Origin: "source-diff"}},
			Steps: []api.FactoryStep{{Name: "diff", Duration: 4 * time.Second}}}
		older := &api.FactoryUpload{Version: "6.1.192-2", Previous: "6.1.192-1", SeenAt: t0.Add(-time.Hour), UpdatedAt: t0.Add(-time.Hour)}
		j := &api.FactoryJob{ID: "6.1.192-3/6.1.0-56-amd64", Upload: "6.1.192-3", Kernel: "6.1.0-56-amd64", Hosts: 2, State: api.JobBuilding, Worker: "w1", CreatedAt: t0, UpdatedAt: t0}
		err := s.Update(ctx, func(tx *store.Tx) error {
			for _, x := range []*api.FactoryUpload{u, older} {
				if err := tx.PutFactoryUpload(ctx, x); err != nil {
					return err
				}
			}
			return tx.PutFactoryJob(ctx, j)
		})
		if err != nil {
			t.Fatal(err)
		}
		// A later update keeps the first seen and created times.
		u2, j2 := *u, *j
		u2.SeenAt, u2.UpdatedAt = t0.Add(time.Hour), t0.Add(time.Hour)
		j2.State, j2.CreatedAt, j2.UpdatedAt = api.JobPublished, t0.Add(time.Hour), t0.Add(time.Hour)
		j2.Refused = []api.FactoryRefusal{{Fix: 2, CVEs: []string{"CVE-2026-99400"}, Reason: "changes the layout of struct x"}}
		err = s.Update(ctx, func(tx *store.Tx) error {
			if err := tx.PutFactoryUpload(ctx, &u2); err != nil {
				return err
			}
			return tx.PutFactoryJob(ctx, &j2)
		})
		if err != nil {
			t.Fatal(err)
		}
		ups, err := s.ListFactoryUploads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantU := u2
		wantU.SeenAt = t0
		if len(ups) != 2 || ups[1].Version != "6.1.192-2" {
			t.Fatalf("ListFactoryUploads = %d uploads, want 6.1.192-3 then 6.1.192-2", len(ups))
		}
		if diff := cmp.Diff(&wantU, ups[0]); diff != "" {
			t.Errorf("ListFactoryUploads[0] mismatch (-want +got):\n%s", diff)
		}
		jobs, err := s.ListFactoryJobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantJ := j2
		wantJ.CreatedAt = t0
		if len(jobs) != 1 {
			t.Fatalf("ListFactoryJobs = %d jobs, want 1", len(jobs))
		}
		if diff := cmp.Diff(&wantJ, jobs[0]); diff != "" {
			t.Errorf("ListFactoryJobs[0] mismatch (-want +got):\n%s", diff)
		}
		err = s.Update(ctx, func(tx *store.Tx) error {
			if _, err := tx.GetFactoryJob(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetFactoryJob(nope) = %v, want ErrNotFound", err)
			}
			if _, err := tx.GetFactoryUpload(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetFactoryUpload(nope) = %v, want ErrNotFound", err)
			}
			got, err := tx.GetFactoryJob(ctx, j.ID)
			if err != nil || got.State != api.JobPublished {
				t.Errorf("GetFactoryJob = %+v, %v", got, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
