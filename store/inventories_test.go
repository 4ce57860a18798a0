package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// TestEachInventory runs over more hosts than one page holds: every
// enrolled host once, in id order, revoked ones left out, hosts that never
// sent an inventory with none.
func TestEachInventory(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		const n = 2*256 + 7
		var want []*store.HostInventory
		err := s.Update(ctx, func(tx *store.Tx) error {
			for i := range n {
				h := &store.Host{ID: fmt.Sprintf("h_%04d", i), Hostname: fmt.Sprintf("web-%d", i), TokenHash: fmt.Sprintf("t%d", i),
					Channel: "stable", Labels: map[string]string{"n": fmt.Sprint(i % 3)}, EnrolledAt: t0}
				if err := tx.InsertHost(ctx, h); err != nil {
					return err
				}
				hi := &store.HostInventory{ID: h.ID, Hostname: h.Hostname, Labels: h.Labels}
				if i%5 != 0 {
					c := &store.Checkin{HostID: h.ID, At: t0.Add(time.Duration(i) * time.Second), Checkin: api.Checkin{
						Hostname: h.Hostname, Inventory: json.RawMessage(fmt.Sprintf(`{"hostname":"web-%d"}`, i))}}
					if err := tx.SaveCheckin(ctx, c); err != nil {
						return err
					}
					hi.LastSeen, hi.Inventory = c.At, c.Inventory
				}
				if i%7 == 3 {
					if err := tx.RevokeHost(ctx, h.ID, t0); err != nil {
						return err
					}
					continue
				}
				want = append(want, hi)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []*store.HostInventory
		if err := s.EachInventory(ctx, func(h *store.HostInventory) error { got = append(got, h); return nil }); err != nil {
			t.Fatalf("EachInventory: %v", err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("EachInventory mismatch (-want +got):\n%s", d)
		}

		// fn's error ends the scan and is returned as it is.
		stop := errors.New("stop")
		calls := 0
		err = s.EachInventory(ctx, func(*store.HostInventory) error {
			if calls++; calls == 300 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 300 {
			t.Errorf("EachInventory with fn failing at 300 = %v after %d calls, want stop after 300", err, calls)
		}
	})
}
