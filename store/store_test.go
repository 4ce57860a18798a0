package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/store/storetest"
)

func forEngines(t *testing.T, f func(t *testing.T, s *store.Store)) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			f(t, storetest.Open(t, eng))
		})
	}
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestMigrateTwice(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			ctx := context.Background()
			dsn := storetest.DSN(t, eng)
			for i := 0; i < 2; i++ {
				s, err := store.Open(ctx, dsn)
				if err != nil {
					t.Fatalf("Open #%d: %v", i, err)
				}
				v, err := s.SchemaVersion(ctx)
				s.Close()
				if err != nil || v < 1 {
					t.Fatalf("SchemaVersion() = %d, %v, want >= 1", v, err)
				}
			}
		})
	}
}

func TestHostsAndCheckins(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		h := &store.Host{ID: "h1", Hostname: "web-1", TokenHash: "aa", Channel: "stable", Labels: map[string]string{"role": "web"}, EnrolledAt: t0}
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.InsertHost(ctx, h) }); err != nil {
			t.Fatal(err)
		}
		// A second host with the same credential hash is refused.
		dup := *h
		dup.ID = "h2"
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.InsertHost(ctx, &dup) }); err == nil {
			t.Errorf("InsertHost(same token hash) = nil, want an error")
		}
		c := &store.Checkin{HostID: "h1", At: t0.Add(time.Minute), Checkin: api.Checkin{
			Hostname: "web-1", KernelRelease: "6.1.0-56-amd64", Health: api.HealthOK,
			Patches:   []api.PatchState{{Name: "lp_1", Level: 1, Enabled: true}},
			Inventory: json.RawMessage(`{"os":"debian"}`),
		}}
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.SaveCheckin(ctx, c) }); err != nil {
			t.Fatal(err)
		}
		// A check-in without inventory keeps the last one, and one without
		// a host name keeps the name.
		c2 := *c
		c2.Inventory = nil
		c2.Hostname = ""
		c2.At = t0.Add(2 * time.Minute)
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.SaveCheckin(ctx, &c2) }); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetHost(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		want := &store.Host{ID: "h1", Hostname: "web-1", TokenHash: "aa", Channel: "stable", Labels: map[string]string{"role": "web"},
			EnrolledAt: t0, LastSeen: t0.Add(2 * time.Minute), KernelRelease: "6.1.0-56-amd64", Health: api.HealthOK,
			Patches: []api.PatchState{{Name: "lp_1", Level: 1, Enabled: true}}, Inventory: json.RawMessage(`{"os":"debian"}`)}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("GetHost(h1) mismatch (-want +got):\n%s", d)
		}
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.RevokeHost(ctx, "h1", t0) }); err != nil {
			t.Fatal(err)
		}
		err = s.Update(ctx, func(tx *store.Tx) error { return tx.RevokeHost(ctx, "h1", t0) })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RevokeHost(revoked) = %v, want ErrNotFound", err)
		}
		if _, err := s.GetHost(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetHost(nope) = %v, want ErrNotFound", err)
		}
	})
}

func TestEnrollTokenUses(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		toks := []*store.EnrollToken{
			{ID: "e1", Name: "two uses", Hash: "h-two", Channel: "stable", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), MaxUses: 2},
			{ID: "e2", Name: "expired", Hash: "h-exp", Channel: "stable", CreatedAt: t0, ExpiresAt: t0.Add(time.Second)},
			{ID: "e3", Name: "revoked", Hash: "h-rev", Channel: "canary", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		}
		err := s.Update(ctx, func(tx *store.Tx) error {
			for _, e := range toks {
				if err := tx.InsertEnrollToken(ctx, e); err != nil {
					return err
				}
			}
			return tx.RevokeEnrollToken(ctx, "e3", t0)
		})
		if err != nil {
			t.Fatal(err)
		}
		use := func(hash string, at time.Time) error {
			return s.Update(ctx, func(tx *store.Tx) error { _, err := tx.UseEnrollToken(ctx, hash, at); return err })
		}
		tests := []struct {
			hash string
			at   time.Time
			want error
		}{
			{"h-two", t0.Add(time.Minute), nil},
			{"h-two", t0.Add(time.Minute), nil},
			{"h-two", t0.Add(time.Minute), store.ErrNotFound}, // used up
			{"h-exp", t0.Add(time.Minute), store.ErrNotFound},
			{"h-rev", t0.Add(time.Minute), store.ErrNotFound},
			{"h-unknown", t0, store.ErrNotFound},
		}
		for i, tt := range tests {
			if err := use(tt.hash, tt.at); !errors.Is(err, tt.want) {
				t.Errorf("#%d UseEnrollToken(%s) = %v, want %v", i, tt.hash, err, tt.want)
			}
		}
		list, err := s.ListEnrollTokens(ctx)
		if err != nil || len(list) != 3 || list[0].Uses != 2 {
			t.Errorf("ListEnrollTokens() = %+v, %v; want 3 tokens, the first used twice", list, err)
		}
	})
}

// TestEnrollTokenConcurrent: many enrollments racing for a token with 5
// uses get exactly 5.
func TestEnrollTokenConcurrent(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		e := &store.EnrollToken{ID: "e", Name: "n", Hash: "h", Channel: "stable", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), MaxUses: 5}
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.InsertEnrollToken(ctx, e) }); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Update(ctx, func(tx *store.Tx) error { _, err := tx.UseEnrollToken(ctx, "h", t0); return err })
				if err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("UseEnrollToken: %v", err)
				}
			}()
		}
		wg.Wait()
		if ok != 5 {
			t.Errorf("successful enrollments = %d, want 5", ok)
		}
	})
}

func TestRolloutsReportsAudit(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		b := &api.BundleInfo{SHA256: "ab12", Name: "lp_1", KernelRelease: "6.1.0-56-amd64", Level: 3, Replace: true, CVEs: []string{"CVE-2024-1086"}, Size: 4, Published: t0}
		r := &store.Rollout{ID: "r1", Seq: 1, Bundle: "ab12", Name: "lp_1", KernelRelease: "6.1.0-56-amd64", Level: 3, Channel: "stable",
			Selector: map[string]string{"role": "web"}, Canary: 1, Waves: []int{10, 50, 100}, MaxFailurePct: 5, OfflineAfter: 5 * time.Minute,
			State: api.RolloutRunning, CreatedAt: t0, UpdatedAt: t0, CreatedBy: "token:x"}
		err := s.Update(ctx, func(tx *store.Tx) error {
			if ins, err := tx.InsertBundle(ctx, b, []byte("data")); err != nil || !ins {
				return fmt.Errorf("InsertBundle = %v, %v", ins, err)
			}
			if ins, err := tx.InsertBundle(ctx, b, []byte("data")); err != nil || ins {
				return fmt.Errorf("InsertBundle again = %v, %v, want false", ins, err)
			}
			if err := tx.InsertHost(ctx, &store.Host{ID: "h1", Hostname: "a", TokenHash: "t1", Channel: "stable", EnrolledAt: t0}); err != nil {
				return err
			}
			if err := tx.InsertRollout(ctx, r); err != nil {
				return err
			}
			return tx.PutRolloutHost(ctx, &store.RolloutHost{RolloutID: "r1", HostID: "h1", Wave: 0, State: api.HostReleased, UpdatedAt: t0})
		})
		if err != nil {
			t.Fatal(err)
		}
		data, err := s.BundleData(ctx, "ab12")
		if err != nil || string(data) != "data" {
			t.Errorf("BundleData() = %q, %v", data, err)
		}
		bs, err := s.ListBundles(ctx)
		if err != nil || len(bs) != 1 {
			t.Fatalf("ListBundles() = %v, %v", bs, err)
		}
		if d := cmp.Diff(b, bs[0]); d != "" {
			t.Errorf("ListBundles mismatch (-want +got):\n%s", d)
		}
		r.State, r.Wave, r.UpdatedAt = api.RolloutPaused, 1, t0.Add(time.Second)
		rh := &store.RolloutHost{RolloutID: "r1", HostID: "h1", Wave: 0, State: api.HostApplied, AppliedAt: t0.Add(time.Second), UpdatedAt: t0.Add(time.Second)}
		rep := &api.Report{RequestID: "req-1", Action: api.ActionApply, Rollout: "r1", Name: "lp_1", Bundle: "ab12", Result: api.ResultOK, At: t0}
		var ins1, ins2 bool
		err = s.Update(ctx, func(tx *store.Tx) error {
			var err error
			if err = tx.UpdateRollout(ctx, r); err != nil {
				return err
			}
			if err = tx.PutRolloutHost(ctx, rh); err != nil {
				return err
			}
			if ins1, err = tx.InsertReport(ctx, "h1", rep, t0); err != nil {
				return err
			}
			if ins2, err = tx.InsertReport(ctx, "h1", rep, t0); err != nil {
				return err
			}
			return tx.InsertAudit(ctx, &api.AuditEntry{At: t0, Actor: "host:h1", Action: "host.apply", Target: "h1", Detail: json.RawMessage(`{"rollout":"r1"}`)})
		})
		if err != nil {
			t.Fatal(err)
		}
		if !ins1 || ins2 {
			t.Errorf("InsertReport twice = %v, %v; want true, false", ins1, ins2)
		}
		if n, err := s.CountReports(ctx, "h1", "r1", api.ActionApply, api.ResultOK); n != 1 || err != nil {
			t.Errorf("CountReports() = %d, %v, want 1", n, err)
		}
		rs, err := s.ListRollouts(ctx)
		if err != nil || len(rs) != 1 {
			t.Fatalf("ListRollouts() = %v, %v", rs, err)
		}
		if d := cmp.Diff(r, rs[0]); d != "" {
			t.Errorf("ListRollouts mismatch (-want +got):\n%s", d)
		}
		rhs, err := s.ListRolloutHosts(ctx, "")
		if err != nil || len(rhs) != 1 {
			t.Fatalf("ListRolloutHosts() = %v, %v", rhs, err)
		}
		if d := cmp.Diff(rh, rhs[0]); d != "" {
			t.Errorf("ListRolloutHosts mismatch (-want +got):\n%s", d)
		}
		au, err := s.ListAudit(ctx, store.AuditFilter{Action: "host.apply"})
		if err != nil || len(au) != 1 || au[0].Actor != "host:h1" || string(au[0].Detail) != `{"rollout":"r1"}` {
			t.Errorf("ListAudit() = %+v, %v", au, err)
		}
	})
}

func TestTokensAndSettings(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a := &store.AdminToken{ID: "a1", Name: "ops", Role: api.RoleOperator, Hash: "x", CreatedAt: t0}
		err := s.Update(ctx, func(tx *store.Tx) error {
			if err := tx.InsertAdminToken(ctx, a); err != nil {
				return err
			}
			if err := tx.PutSetting(ctx, "k", "v1"); err != nil {
				return err
			}
			return tx.PutSetting(ctx, "k", "v2")
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.RevokeAdminToken(ctx, "a1", t0) }); err != nil {
			t.Fatal(err)
		}
		ts, err := s.ListAdminTokens(ctx)
		if err != nil || len(ts) != 1 || ts[0].RevokedAt.IsZero() {
			t.Errorf("ListAdminTokens() = %+v, %v, want one revoked", ts, err)
		}
		m, err := s.Settings(ctx)
		if err != nil || m["k"] != "v2" {
			t.Errorf("Settings() = %v, %v, want k=v2", m, err)
		}
	})
}

// TestBatchThroughput is a smoke check that a batch of check-ins is one
// cheap transaction on both engines.
func TestBatchThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		const n = 2000
		err := s.Update(ctx, func(tx *store.Tx) error {
			for i := 0; i < n; i++ {
				if err := tx.InsertHost(ctx, &store.Host{ID: fmt.Sprint("h", i), Hostname: "x", TokenHash: fmt.Sprint("t", i), Channel: "stable", EnrolledAt: t0}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = s.Update(ctx, func(tx *store.Tx) error {
			for i := 0; i < n; i++ {
				c := &store.Checkin{HostID: fmt.Sprint("h", i), At: t0, Checkin: api.Checkin{Health: api.HealthOK, Patches: []api.PatchState{{Name: "lp", Enabled: true}}}}
				if err := tx.SaveCheckin(ctx, c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		t.Logf("%s: %d check-ins in one transaction: %v (%.0f/s)", s.Engine(), n, el, n/el.Seconds())
	})
}

// TestPruneHost: a host's newest reports and audit entries are kept, the
// older ones deleted, other hosts' untouched (issue 12, part 1).
func TestPruneHost(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			st := storetest.Open(t, eng)
			ctx := context.Background()
			t0 := time.UnixMilli(1_700_000_000_000).UTC()
			err := st.Update(ctx, func(tx *store.Tx) error {
				for _, id := range []string{"h1", "h2"} {
					if err := tx.InsertHost(ctx, &store.Host{ID: id, Hostname: id, TokenHash: id, Channel: "stable", EnrolledAt: t0}); err != nil {
						return err
					}
					for i := range 5 {
						at := t0.Add(time.Duration(i) * time.Second)
						if _, err := tx.InsertReport(ctx, id, &api.Report{RequestID: fmt.Sprint(i), Action: api.ActionReboot, Result: api.ResultOK, At: at}, at); err != nil {
							return err
						}
						if err := tx.InsertAudit(ctx, &api.AuditEntry{At: at, Actor: "host:" + id, Action: "host.reboot", Target: id}); err != nil {
							return err
						}
					}
				}
				return tx.PruneHost(ctx, "h1", 2)
			})
			if err != nil {
				t.Fatal(err)
			}
			for id, want := range map[string]int{"h1": 2, "h2": 5} {
				r, a, err := st.CountHostRecords(ctx, id)
				if err != nil || r != want || a != want {
					t.Errorf("CountHostRecords(%s) = %d reports, %d audit, %v; want %d of each", id, r, a, err, want)
				}
			}
		})
	}
}
