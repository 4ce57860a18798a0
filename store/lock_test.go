package store_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/store/storetest"
)

func openPair(t *testing.T) (a, b *store.Store, dsn string) {
	t.Helper()
	dsn = storetest.DSN(t, store.Postgres)
	for _, p := range []**store.Store{&a, &b} {
		s, err := store.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		*p = s
	}
	return a, b, dsn
}

// TestLock: one session holds the server lock; another gets it once the
// first connection ends, including when PostgreSQL terminates it.
func TestLock(t *testing.T) {
	ctx := context.Background()
	a, b, dsn := openPair(t)
	la, err := a.NewLock()
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := b.NewLock()
	defer la.Close()
	defer lb.Close()
	if ok, err := la.Try(ctx); !ok || err != nil {
		t.Fatalf("first Try() = %v, %v, want true", ok, err)
	}
	if ok, err := lb.Try(ctx); ok || err != nil {
		t.Fatalf("second Try() while held = %v, %v, want false", ok, err)
	}
	if err := la.Check(ctx); err != nil {
		t.Fatalf("Check() of the holder = %v", err)
	}
	// The backend of the holder's connection is terminated, as when
	// PostgreSQL drops a dead client: the holder's Check fails and the
	// other session takes the lock.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pid int
	if err := db.QueryRow(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, store.LockApplicationName).Scan(&pid); err != nil {
		t.Fatalf("find the lock's backend: %v", err)
	}
	if uint32(pid) != la.BackendPID() {
		t.Fatalf("pg_stat_activity names backend %d, the lock has %d", pid, la.BackendPID())
	}
	if _, err := db.Exec(`SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := la.Check(cctx); err == nil {
		t.Errorf("Check() after pg_terminate_backend = nil, want an error")
	}
	got := false
	for deadline := time.Now().Add(5 * time.Second); !got && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got, err = lb.Try(ctx)
	}
	if !got {
		t.Fatalf("the other session did not get the lock after the holder's backend ended (last error %v)", err)
	}
}

// TestFence: once a second store fences, the first one's writes fail with
// ErrFenced; a write transaction of the first one that began before the
// fence holds it back until it commits.
func TestFence(t *testing.T) {
	ctx := context.Background()
	a, b, _ := openPair(t)
	now := time.Now()
	ea, err := a.Fence(ctx, "a", now)
	if err != nil || ea < 1 {
		t.Fatalf("Fence(a) = %d, %v", ea, err)
	}
	put := func(s *store.Store, v string) error {
		return s.Update(ctx, func(tx *store.Tx) error { return tx.PutSetting(ctx, "k", v) })
	}
	if err := put(a, "a1"); err != nil {
		t.Fatalf("write of the fenced holder: %v", err)
	}

	// a's transaction has passed its epoch check and waits; b fences
	// meanwhile. b's fence must wait for a's commit.
	inTx, release := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		aDone <- a.Update(ctx, func(tx *store.Tx) error {
			close(inTx)
			<-release
			return tx.PutSetting(ctx, "k", "a2")
		})
	}()
	<-inTx
	fenced := make(chan error, 1)
	var eb int64
	go func() {
		var err error
		eb, err = b.Fence(ctx, "b", now)
		fenced <- err
	}()
	select {
	case err := <-fenced:
		t.Fatalf("Fence(b) returned (%v) while a's write transaction was open", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatalf("a's write begun before the fence: %v", err)
	}
	if err := <-fenced; err != nil || eb != ea+1 {
		t.Fatalf("Fence(b) = %d, %v, want %d", eb, err, ea+1)
	}
	set, err := b.Settings(ctx)
	if err != nil || set["k"] != "a2" {
		t.Errorf("after the fence b reads k = %q, %v, want a's last write a2", set["k"], err)
	}
	if err := put(a, "a3"); !errors.Is(err, store.ErrFenced) {
		t.Errorf("write of the old holder after the fence = %v, want ErrFenced", err)
	}
	if err := put(b, "b1"); err != nil {
		t.Errorf("write of the new holder: %v", err)
	}
	if set, _ := b.Settings(ctx); set["k"] != "b1" {
		t.Errorf("k = %q, want b1", set["k"])
	}
}

// TestFenceMissingRow: with the leader row gone (deleted by hand, a partial
// restore) the holder's writes fail with ErrFenced, so it stops instead of
// serving on with every write failing, and another store can still fence
// and write: the row is made again.
func TestFenceMissingRow(t *testing.T) {
	ctx := context.Background()
	a, b, dsn := openPair(t)
	if _, err := a.Fence(ctx, "a", time.Now()); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM leader`); err != nil {
		t.Fatal(err)
	}
	put := func(s *store.Store, v string) error {
		return s.Update(ctx, func(tx *store.Tx) error { return tx.PutSetting(ctx, "k", v) })
	}
	if err := put(a, "a1"); !errors.Is(err, store.ErrFenced) {
		t.Errorf("holder's write with the leader row missing = %v, want ErrFenced", err)
	}
	if _, err := b.Fence(ctx, "b", time.Now()); err != nil {
		t.Fatalf("Fence(b) with the leader row missing = %v, want the row made again", err)
	}
	if err := put(b, "b1"); err != nil {
		t.Errorf("new holder's write: %v", err)
	}
	if err := put(a, "a2"); !errors.Is(err, store.ErrFenced) {
		t.Errorf("old holder's write after the new fence = %v, want ErrFenced", err)
	}
}
