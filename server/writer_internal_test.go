package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/store/storetest"
)

// TestWriterFailedOpKeepsBatch: in one batch, a write that fails (an
// unknown enrollment token) and a write whose caller has gone (cancelled
// context) cost neither their neighbours nor extra commits: the batch
// commits once, with every good write in it (issue 12, part 4).
func TestWriterFailedOpKeepsBatch(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			st := storetest.Open(t, eng)
			s := &Server{reg: prometheus.NewRegistry()}
			met := newMetrics(s)
			w := newWriter(st, slog.New(slog.DiscardHandler), met, func(error) {})
			ctx := context.Background()
			gone, cancel := context.WithCancel(ctx)
			cancel()
			audit := func(c context.Context, action string) func(*store.Tx) error {
				return func(tx *store.Tx) error {
					return tx.InsertAudit(c, &api.AuditEntry{At: time.Now(), Actor: "test", Action: action})
				}
			}
			ops := []*writeOp{
				{fn: audit(ctx, "a"), res: make(chan error, 1)},
				{fn: func(tx *store.Tx) error {
					if err := tx.InsertAudit(ctx, &api.AuditEntry{At: time.Now(), Actor: "test", Action: "half"}); err != nil {
						return err
					}
					_, err := tx.UseEnrollToken(ctx, "bogus", time.Now())
					return err
				}, res: make(chan error, 1)},
				{fn: audit(gone, "b"), res: make(chan error, 1)},
				{fn: audit(ctx, "c"), res: make(chan error, 1)},
			}
			for _, op := range ops {
				w.in <- op // queued before the writer runs: one batch
			}
			wctx, stop := context.WithCancel(ctx)
			go w.run(wctx)
			for i, op := range ops {
				err := <-op.res
				if want := i == 1; (err != nil) != want || (want && !errors.Is(err, store.ErrNotFound)) {
					t.Errorf("op %d: err = %v, want failure %v", i, err, want)
				}
			}
			stop()
			<-w.done
			var m dto.Metric
			met.dbCommit.(prometheus.Metric).Write(&m)
			if n := m.GetHistogram().GetSampleCount(); n != 1 {
				t.Errorf("transactions for one batch with a failing write: %d, want 1", n)
			}
			es, err := st.ListAudit(ctx, store.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Action)
			}
			if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
				t.Errorf("audit after the batch = %v, want [a b c] (nothing of the failed write)", got)
			}
		})
	}
}
