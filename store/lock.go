package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// LockKey is the PostgreSQL advisory lock key that makes one stent-server
// the active one on a database: the first 8 bytes of SHA-256("stent-server")
// as a big-endian int64. Advisory locks are per database, so servers of
// different databases on one cluster do not meet.
var LockKey = func() int64 {
	sum := sha256.Sum256([]byte("stent-server"))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}()

// LockApplicationName is the application_name of the lock's connection, so
// an operator finds it in pg_stat_activity.
const LockApplicationName = "stent-server lock"

// ErrFenced is returned by Update once another server has taken over the
// database (see Fence): this one must stop.
var ErrFenced = errors.New("another stent-server has taken over the database")

// Lock is the session-level advisory lock (LockKey) held on a connection of
// its own. PostgreSQL releases it when that connection ends, however it
// ends: process killed, machine lost (once TCP keepalives notice, see
// pgRuntimeParams), or the backend terminated.
type Lock struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
	held bool
}

// NewLock returns the store's lock, not taken yet. Only PostgreSQL stores
// have one.
func (s *Store) NewLock() (*Lock, error) {
	if s.engine != Postgres {
		return nil, fmt.Errorf("lock: only PostgreSQL stores have a server lock (this one is %s)", s.engine)
	}
	cfg := s.pgcfg.Copy()
	cfg.RuntimeParams["application_name"] = LockApplicationName
	return &Lock{cfg: cfg}, nil
}

// Try tries to take the lock once, connecting first if needed. It reports
// false when another session holds it. A connection error drops the
// connection, so the next Try connects again.
func (l *Lock) Try(ctx context.Context) (bool, error) {
	if l.held {
		return true, nil
	}
	if l.conn == nil {
		c, err := pgx.ConnectConfig(ctx, l.cfg)
		if err != nil {
			return false, fmt.Errorf("lock connection: %w", err)
		}
		l.conn = c
	}
	var ok bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, LockKey).Scan(&ok); err != nil {
		l.drop()
		return false, fmt.Errorf("pg_try_advisory_lock: %w", err)
	}
	l.held = ok
	return ok, nil
}

// Check confirms, within ctx, that the lock's connection is alive, which
// is what keeps the lock held. An error means the lock may be gone.
func (l *Lock) Check(ctx context.Context) error {
	if !l.held || l.conn == nil {
		return errors.New("lock not held")
	}
	if err := l.conn.Ping(ctx); err != nil {
		l.drop()
		return fmt.Errorf("lock connection: %w", err)
	}
	return nil
}

// BackendPID returns the PostgreSQL backend process of the lock's
// connection (0 when not connected).
func (l *Lock) BackendPID() uint32 {
	if l.conn == nil {
		return 0
	}
	return l.conn.PgConn().PID()
}

// Close ends the lock's connection, which releases the lock.
func (l *Lock) Close() error {
	l.drop()
	return nil
}

func (l *Lock) drop() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l.conn.Close(ctx)
		cancel()
		l.conn = nil
	}
	l.held = false
}

// Fence makes this store the database's only writer: it bumps the epoch in
// the leader row and from then on every Update first reads that row FOR
// SHARE and fails with ErrFenced when the epoch is no longer its own. The
// caller must hold the Lock.
//
// Why this is safe: the bump is an UPDATE of the row every write
// transaction share-locks. A write transaction of the old server that
// read its epoch before the bump holds the row, so the bump waits for it to
// commit or roll back; one that reads after the bump sees the new epoch and
// fails. So every write the old server commits is committed before the
// bump, and the new server loads its state after the bump: it sees them all.
func (s *Store) Fence(ctx context.Context, holder string, now time.Time) (int64, error) {
	if s.engine != Postgres {
		return 0, nil
	}
	// The row comes with the schema (migration 2). Should it be gone
	// (deleted by hand, a partial restore), it is made again rather than
	// leaving every instance unable to start: with the current time in
	// milliseconds as its epoch, which no holder's counter is near, and
	// which an old holder never reaches anyway, as it stops at its first
	// write that finds the row missing (checkEpoch).
	var epoch int64
	err := s.Update(ctx, func(t *Tx) error {
		return t.queryRow(ctx, `INSERT INTO leader (id, epoch, holder, since) VALUES (1, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET epoch = leader.epoch + 1, holder = EXCLUDED.holder, since = EXCLUDED.since
			RETURNING epoch`, max(ms(now), 1), holder, ms(now)).Scan(&epoch)
	})
	if err != nil {
		return 0, fmt.Errorf("fence: %w", err)
	}
	s.epoch.Store(epoch)
	return epoch, nil
}

// checkEpoch is the first statement of every write transaction of a fenced
// store.
func (t *Tx) checkEpoch(ctx context.Context, want int64) error {
	var got int64
	err := t.tx.QueryRowContext(ctx, `SELECT epoch FROM leader WHERE id = 1 FOR SHARE`).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		// Not a transient error to retry: the row this server's claim
		// rests on is gone, and an instance taking over makes it again.
		return fmt.Errorf("%w (the leader row is missing; this server's epoch was %d)", ErrFenced, want)
	}
	if err != nil {
		return fmt.Errorf("check leader epoch: %w", err)
	}
	if got != want {
		return fmt.Errorf("%w (epoch %d, this server's %d)", ErrFenced, got, want)
	}
	return nil
}
