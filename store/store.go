// Package store keeps stent-server's state in SQL: embedded SQLite by default
// (one file, zero set-up) or PostgreSQL when given a postgres:// DSN. Both
// engines run the same migrations and the same queries; the few spelling
// differences (placeholders, binary and serial column types) are handled by
// a small dialect.
//
// The server keeps its working set in memory and writes through this
// package; writes are grouped into transactions by the caller (see Update)
// so that thousands of agent check-ins a second cost a few commits.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"           // registers the "sqlite" database/sql driver
)

// ErrNotFound is returned when a row asked for by key does not exist.
var ErrNotFound = errors.New("not found")

// Engine names.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Store is a handle on the database. It is safe for concurrent use.
type Store struct {
	engine string
	w      *sql.DB // writes; SQLite: a single connection, so one writer
	r      *sql.DB // reads; SQLite: a pool of read-only connections (WAL)
	pgcfg  *pgx.ConnConfig
	epoch  atomic.Int64 // set by Fence; every Update checks it when not 0
}

// Open opens (creating if needed) the database named by dsn and brings its
// schema up to date. dsn is a postgres:// or postgresql:// URL for
// PostgreSQL, or a file path (optionally "sqlite:" prefixed) for SQLite.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// pgRuntimeParams are session settings every PostgreSQL connection of the
// store asks for unless the DSN sets them. The keepalives make PostgreSQL
// notice within about 15 s that a server machine is gone, which ends its
// sessions and so releases its lock and its row locks (the kernel's
// default is two hours); a transaction left open by a stuck client is
// ended after a minute (the server's write transactions run their
// statements back to back).
var pgRuntimeParams = map[string]string{
	"tcp_keepalives_idle":                 "5",
	"tcp_keepalives_interval":             "2",
	"tcp_keepalives_count":                "3",
	"tcp_user_timeout":                    "15000",
	"idle_in_transaction_session_timeout": "60000",
}

// Connect opens the database like Open, without bringing the schema up to
// date: a standby server must not change the schema under the active one.
func Connect(ctx context.Context, dsn string) (*Store, error) {
	s := &Store{}
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.engine = Postgres
		if s.pgcfg, err = pgx.ParseConfig(dsn); err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		for k, v := range pgRuntimeParams {
			if _, ok := s.pgcfg.RuntimeParams[k]; !ok {
				s.pgcfg.RuntimeParams[k] = v
			}
		}
		s.w = stdlib.OpenDB(*s.pgcfg.Copy())
		s.w.SetMaxOpenConns(16)
		s.w.SetMaxIdleConns(16)
		s.r = s.w
	default:
		s.engine = SQLite
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, errors.New("open sqlite: empty path")
		}
		if err := checkSQLiteWritable(path); err != nil {
			return nil, err
		}
		const pragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
		if s.w, err = sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_txlock=immediate"); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		s.w.SetMaxOpenConns(1) // SQLite has one writer; queue in Go, not in busy loops
		s.w.SetConnMaxIdleTime(0)
		if s.r, err = sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)"); err != nil {
			s.w.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		s.r.SetMaxOpenConns(4)
	}
	if err := s.w.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect %s: %w", s.engine, err)
	}
	return s, nil
}

// Engine returns SQLite or Postgres.
func (s *Store) Engine() string { return s.engine }

// Close closes the database.
func (s *Store) Close() error {
	var err error
	if s.r != nil && s.r != s.w {
		err = s.r.Close()
	}
	if s.w != nil {
		err = errors.Join(err, s.w.Close())
	}
	return err
}

// rebind turns the ? placeholders every query here is written with into
// PostgreSQL's $1, $2, ... No query here has a ? inside a string literal.
func (s *Store) rebind(q string) string {
	if s.engine != Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return s.w.ExecContext(ctx, s.rebind(q), args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.r.QueryContext(ctx, s.rebind(q), args...)
}

// queryAll runs q and returns every row as scan makes it; what names the
// listing in errors.
func queryAll[T any](ctx context.Context, s *Store, what, q string, args []any, scan func(*sql.Rows) (T, error)) ([]T, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.r.QueryRowContext(ctx, s.rebind(q), args...)
}

// Tx is a write transaction handed to Update's callback.
type Tx struct {
	s     *Store
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	sp    int // savepoints made
}

// Update runs fn in one write transaction and commits it when fn returns
// nil. Callers batch many small writes into one Update.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) (err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	t := &Tx{s: s, tx: tx, stmts: map[string]*sql.Stmt{}}
	defer func() {
		for _, st := range t.stmts {
			st.Close()
		}
		if err != nil {
			tx.Rollback()
		}
	}()
	if e := s.epoch.Load(); e != 0 {
		if err = t.checkEpoch(ctx, e); err != nil {
			return err
		}
	}
	if err = fn(t); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Savepoint runs fn so that when it fails, what it wrote is undone and
// the transaction goes on: one bad write in a group commit does not cost
// the others. Savepoints are spelled the same on both engines.
func (t *Tx) Savepoint(ctx context.Context, fn func(*Tx) error) error {
	t.sp++
	name := "sp" + strconv.Itoa(t.sp)
	if _, err := t.tx.ExecContext(context.WithoutCancel(ctx), "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(t); err != nil {
		if _, rerr := t.tx.ExecContext(context.WithoutCancel(ctx), "ROLLBACK TO SAVEPOINT "+name); rerr != nil {
			return errors.Join(err, fmt.Errorf("%w: rollback to savepoint: %v", errTxBroken, rerr))
		}
		return err
	}
	if _, err := t.tx.ExecContext(context.WithoutCancel(ctx), "RELEASE SAVEPOINT "+name); err != nil {
		return fmt.Errorf("%w: release savepoint: %v", errTxBroken, err)
	}
	return nil
}

// errTxBroken marks a Savepoint failure that leaves the transaction
// unusable: the caller must roll it back.
var errTxBroken = errors.New("transaction broken")

// Broken reports whether err, from Savepoint, means the whole transaction
// must be rolled back.
func Broken(err error) bool { return errors.Is(err, errTxBroken) }

// exec runs q in the transaction through a statement prepared once per
// transaction, which matters when a batch repeats it a thousand times.
// The caller's ctx does not cut a write short: Update's ctx governs the
// transaction, and a request that went away must not undo its batch.
func (t *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	st, ok := t.stmts[q]
	if !ok {
		var err error
		if st, err = t.tx.PrepareContext(ctx, t.s.rebind(q)); err != nil {
			return nil, err
		}
		t.stmts[q] = st
	}
	return st.ExecContext(ctx, args...)
}

func (t *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(context.WithoutCancel(ctx), t.s.rebind(q), args...)
}

// Times are stored as Unix milliseconds; 0 is "never".
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// LimitSQLiteSize caps the SQLite database at pages pages of the writer
// connection (PRAGMA max_page_count): past it, writes fail as on a full
// disk. Tests use it to fill the store; it does nothing on PostgreSQL.
func (s *Store) LimitSQLiteSize(ctx context.Context, pages int64) error {
	if s.engine != SQLite {
		return nil
	}
	_, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	return err
}

// SQLitePages returns the SQLite database's size in pages.
func (s *Store) SQLitePages(ctx context.Context) (int64, error) {
	var n int64
	err := s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&n)
	return n, err
}
