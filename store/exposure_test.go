package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// TestExposureHistory: snapshots come back oldest first, from a time on,
// the newest limit of them; one at an existing time replaces it; pruning
// deletes the old ones only.
func TestExposureHistory(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		var want []api.ExposurePoint
		err := s.Update(ctx, func(tx *store.Tx) error {
			for i := range 10 {
				p := api.ExposurePoint{At: t0.Add(time.Duration(i) * time.Hour), Hosts: 100, Exposed: 90 - i, Overdue: 10 - i, CVEs: 40 + i,
					Pairs: map[string]int{"critical": i, "high": 2 * i}}
				if err := tx.InsertExposure(ctx, &p); err != nil {
					return err
				}
				want = append(want, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ListExposure(ctx, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("ListExposure() mismatch (-want +got):\n%s", d)
		}
		if got, _ := s.ListExposure(ctx, t0.Add(7*time.Hour), 0); len(got) != 3 || !got[0].At.Equal(want[7].At) {
			t.Errorf("ListExposure(since +7h) = %d points from %v, want 3 from %v", len(got), got[0].At, want[7].At)
		}
		if got, _ := s.ListExposure(ctx, time.Time{}, 4); len(got) != 4 || !got[0].At.Equal(want[6].At) || !got[3].At.Equal(want[9].At) {
			t.Errorf("ListExposure(limit 4) = %+v, want the newest 4, oldest first", got)
		}
		// The same time again replaces the snapshot.
		again := want[9]
		again.Exposed = 1
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.InsertExposure(ctx, &again) }); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.ListExposure(ctx, want[9].At, 0); len(got) != 1 || got[0].Exposed != 1 {
			t.Errorf("after replacing the newest: %+v, want one point with exposed 1", got)
		}
		var n int64
		if err := s.Update(ctx, func(tx *store.Tx) (err error) { n, err = tx.PruneExposure(ctx, t0.Add(5*time.Hour)); return err }); err != nil {
			t.Fatal(err)
		}
		got, _ = s.ListExposure(ctx, time.Time{}, 0)
		if n != 5 || len(got) != 5 || !got[0].At.Equal(want[5].At) {
			t.Errorf("PruneExposure(+5h) deleted %d, %d left from %v; want 5 deleted, 5 left from %v", n, len(got), got[0].At, want[5].At)
		}
	})
}
