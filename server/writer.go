package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/stent-dev/stent/store"
)

// writer serialises every write to the store through one goroutine and
// group-commits: the writes queued while a transaction commits go together
// into the next one. SQLite has one writer anyway; this way thousands of
// check-ins a second cost tens of commits, and each caller still learns when
// its own write is durable.
type writer struct {
	st   *store.Store
	log  *slog.Logger
	in   chan *writeOp
	met  *metrics
	done chan struct{}
	// fenced is called when a commit fails with store.ErrFenced: another
	// server has taken over the database.
	fenced func(error)
	// committed, when set, is called after each commit that succeeded.
	committed func()
	// lastFail is the last write failure for a full or unwritable store
	// (a storeFailure), for /healthz.
	lastFail atomic.Pointer[storeFailure]
}

type storeFailure struct {
	at  time.Time
	err error
}

// storeFailWindow is how long a write failure for a full or unwritable
// store keeps /healthz failing.
const storeFailWindow = 10 * time.Second

// noteFailure remembers err when it says the store is full or unwritable.
func (w *writer) noteFailure(err error) {
	if err != nil && store.Classify(err) != nil {
		w.lastFail.Store(&storeFailure{at: time.Now(), err: err})
	}
}

// recentFailure returns the last failure for a full or unwritable store
// when it is recent.
func (w *writer) recentFailure() error {
	if f := w.lastFail.Load(); f != nil && time.Since(f.at) < storeFailWindow {
		return f.err
	}
	return nil
}

type writeOp struct {
	fn  func(*store.Tx) error // must be safe to run again (a batch whose commit fails is retried op by op)
	res chan error
}

const maxBatch = 2000

func newWriter(st *store.Store, log *slog.Logger, met *metrics, fenced func(error)) *writer {
	return &writer{st: st, log: log, met: met, fenced: fenced, in: make(chan *writeOp, 8192), done: make(chan struct{})}
}

// do queues fn and waits until it is committed or failed. A cancelled ctx
// stops the waiting, not the write.
func (w *writer) do(ctx context.Context, fn func(*store.Tx) error) error {
	op := &writeOp{fn: fn, res: make(chan error, 1)}
	select {
	case w.in <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.done:
		return errWriterClosed
	}
	select {
	case err := <-op.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errWriterClosed = errors.New("server is shutting down")

// run commits batches until ctx is cancelled, then drains what is queued.
func (w *writer) run(ctx context.Context) {
	defer close(w.done)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		var first *writeOp
		select {
		case first = <-w.in:
		case <-ctx.Done():
			// Commit what is already queued so callers are not left hanging.
			for {
				select {
				case op := <-w.in:
					w.commit(context.Background(), []*writeOp{op})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case op := <-w.in:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		w.commit(context.Background(), batch)
	}
}

func (w *writer) commit(ctx context.Context, batch []*writeOp) {
	start := time.Now()
	// Each write in its own savepoint: one that fails is undone alone and
	// its caller told, and the others commit together.
	errs := make([]error, len(batch))
	err := w.st.Update(ctx, func(tx *store.Tx) error {
		for i, op := range batch {
			if len(batch) == 1 {
				errs[i] = op.fn(tx)
				return errs[i]
			}
			errs[i] = tx.Savepoint(ctx, op.fn)
			if store.Broken(errs[i]) {
				return errs[i]
			}
		}
		return nil
	})
	w.met.dbCommit.Observe(time.Since(start).Seconds())
	w.met.dbBatch.Observe(float64(len(batch)))
	w.noteFailure(err)
	if err == nil {
		for i, op := range batch {
			w.noteFailure(errs[i])
			if errs[i] != nil {
				w.log.Warn("store write failed", "err", errs[i])
			}
			op.res <- errs[i]
		}
		if w.committed != nil {
			w.committed()
		}
		return
	}
	if errors.Is(err, store.ErrFenced) {
		// No write of this server can commit any more: fail them all.
		w.fenced(fmt.Errorf("%w: %v", ErrLockLost, err))
		for _, op := range batch {
			op.res <- err
		}
		return
	}
	if len(batch) == 1 {
		w.log.Warn("store write failed", "err", err)
		batch[0].res <- err
		return
	}
	// The commit itself failed (or a savepoint broke the transaction):
	// retry each write on its own.
	for _, op := range batch {
		w.commit(ctx, []*writeOp{op})
	}
}
