package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/store/storetest"
)

// TestGrantLeaseNeverOverBudget: twelve hosts ask for a lease at once
// through two store handles on the same database (two server instances
// on PostgreSQL, or on SQLite two connections to one file); with a budget
// of 2 exactly two leases are stored. An expired lease is deleted and
// returned, which frees the budget.
func TestGrantLeaseNeverOverBudget(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			ctx := context.Background()
			dsn := storetest.DSN(t, eng)
			var stores []*store.Store
			for range 2 {
				s, err := store.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
			const n = 12
			for i := range n {
				h := &store.Host{ID: fmt.Sprintf("h%d", i), Hostname: fmt.Sprintf("web-%d", i), TokenHash: fmt.Sprintf("t%d", i), Channel: "stable", EnrolledAt: t0}
				if err := stores[0].Update(ctx, func(tx *store.Tx) error { return tx.InsertHost(ctx, h) }); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			granted := 0
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := &store.Lease{ID: fmt.Sprintf("l%d", i), HostID: fmt.Sprintf("h%d", i), Group: "web", GrantedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
					var ok bool
					err := stores[i%2].Update(ctx, func(tx *store.Tx) error {
						var err error
						ok, _, _, _, err = tx.GrantLease(ctx, l, t0, func(held []*store.Lease) bool { return len(held) < 2 })
						return err
					})
					if err != nil {
						t.Errorf("GrantLease(%s): %v", l.HostID, err)
						return
					}
					if ok {
						mu.Lock()
						granted++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			ls, err := stores[1].ListLeases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if granted != 2 || len(ls) != 2 {
				t.Fatalf("%d grants, %d stored leases with a budget of 2, want 2 and 2", granted, len(ls))
			}
			// After the TTL the two expire; the next asker gets one.
			later := t0.Add(11 * time.Minute)
			var expired []*store.Lease
			var ok bool
			l := &store.Lease{ID: "l-late", HostID: "h11", Group: "web", GrantedAt: later, ExpiresAt: later.Add(time.Minute)}
			if ls[0].HostID == "h11" || ls[1].HostID == "h11" {
				l.HostID = "h10"
				if ls[0].HostID == "h10" || ls[1].HostID == "h10" {
					l.HostID = "h9"
				}
			}
			err = stores[0].Update(ctx, func(tx *store.Tx) error {
				var err error
				ok, _, _, expired, err = tx.GrantLease(ctx, l, later, func(held []*store.Lease) bool { return len(held) < 2 })
				return err
			})
			if err != nil || !ok || len(expired) != 2 {
				t.Errorf("GrantLease after the TTL = %v, %d expired, %v; want granted with 2 expired", ok, len(expired), err)
			}
			// Kernel check-ins survive in the hosts table.
			kc := &api.KernelCheckin{Running: "6.1.0-57-amd64", RebootReasons: []string{api.RebootNewerKernel}}
			if err := stores[0].Update(ctx, func(tx *store.Tx) error { return tx.SaveKernelCheckin(ctx, "h3", kc) }); err != nil {
				t.Fatal(err)
			}
			kcs, err := stores[1].KernelCheckins(ctx)
			if err != nil || len(kcs) != 1 || kcs["h3"].Running != "6.1.0-57-amd64" || kcs["h3"].RebootReasons[0] != api.RebootNewerKernel {
				t.Errorf("KernelCheckins() = %+v, %v", kcs, err)
			}
		})
	}
}
