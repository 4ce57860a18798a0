package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/flock"
)

// Active/standby on PostgreSQL (docs/server.md, "Active and standby").
//
// An instance is active when it holds the store's advisory lock
// (store.Lock) on a connection of its own; only then does it load the
// fleet, fence the database (store.Fence) and serve the API. Without it
// the instance is a standby: it answers 503 with code "standby" on every
// API path and on /healthz, serves /metrics, and tries the lock again
// every lockRetry. The active one checks its lock connection every
// lockCheckEvery; when the check fails (or a write comes back fenced) it
// stops serving the API and the rollout engine at once and Serve returns
// an error wrapping ErrLockLost, so the process exits non-zero and its
// supervisor starts it again, as a standby.

// ErrLockLost is returned by Serve when the active instance can no longer
// show that it holds the database lock: another instance may be active.
var ErrLockLost = errors.New("lost the database lock: another stent-server may be active now")

const (
	lockRetry        = 500 * time.Millisecond
	lockCheckEvery   = time.Second
	lockCheckTimeout = 2 * time.Second
)

// Active reports whether the server serves the API (it holds the database,
// as opposed to waiting as a standby).
func (s *Server) Active() bool { return s.active.Load() }

// activate brings the schema up to date, fences the database, loads the
// fleet and creates the first admin token if needed. The caller holds the
// lock (PostgreSQL) or the data folder (SQLite).
func (s *Server) activate(ctx context.Context) error {
	if err := s.st.Migrate(ctx); err != nil {
		return err
	}
	if s.lock != nil {
		host, _ := os.Hostname()
		epoch, err := s.st.Fence(ctx, fmt.Sprintf("%s pid %d", host, os.Getpid()), s.now())
		if err != nil {
			return err
		}
		s.log.Info("fenced the database", "epoch", epoch)
	}
	s.mu.Lock() // /metrics may be reading memory already
	err := s.load(ctx)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.bootstrapAdmin(ctx); err != nil {
		return err
	}
	s.active.Store(true)
	return nil
}

// awaitLock is a standby's life: try the lock until it is ours, then
// become active.
func (s *Server) awaitLock(ctx context.Context) error {
	s.log.Info("standby: another stent-server holds the database lock; waiting to take over", "retry", lockRetry)
	lastErr := ""
	for {
		ok, err := s.lock.Try(ctx)
		if ok {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if msg := fmt.Sprint(err); err != nil && msg != lastErr {
			s.log.Warn("standby: cannot reach the database; retrying", "err", err)
			lastErr = msg
		} else if err == nil && lastErr != "" {
			s.log.Info("standby: database reachable again; still waiting")
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lockRetry):
		}
	}
	start := time.Now()
	s.log.Info("took the database lock: loading the fleet")
	if err := s.activate(ctx); err != nil {
		return fmt.Errorf("take over: %w", err)
	}
	s.mu.RLock()
	s.log.Info("active", "hosts", len(s.hosts), "rollouts", len(s.rollouts), "took", time.Since(start).Round(time.Millisecond))
	s.mu.RUnlock()
	return nil
}

// watchLock checks the lock's connection until ctx ends or the check
// fails, which it reports through s.fail.
func (s *Server) watchLock(ctx context.Context) {
	t := time.NewTicker(lockCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, lockCheckTimeout)
		err := s.lock.Check(cctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.fail(fmt.Errorf("%w (%v)", ErrLockLost, err))
			return
		}
	}
}

// fail stops serving the API at once and makes Serve return err.
func (s *Server) fail(err error) {
	wasActive := s.active.Swap(false)
	select {
	case s.fatal <- err:
		if wasActive {
			s.log.Error("stopped serving: exiting so the supervisor restarts this instance as a standby", "err", err)
		}
	default: // already failing
	}
}

// standby answers API calls while the server is not active.
func writeStandby(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, api.Error{
		Error: "this stent-server is a standby: another instance is active on the database; use the active one",
		Code:  api.CodeStandby,
	})
}

// lockDataDir takes an exclusive flock(2) on the data folder for the life
// of the process, so a second server on the same SQLite database fails at
// start instead of writing next to the first.
func lockDataDir(dir string) (unlock func(), err error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	unlock, err = flock.TryLock(dir)
	if errors.Is(err, flock.ErrLocked) {
		by := ""
		if pid := flock.Holder(dir); pid > 0 {
			by = fmt.Sprintf(" (process %d)", pid)
		}
		return nil, fmt.Errorf("data folder %s is in use by another stent-server%s: SQLite allows one server per database (stop the other one, or use PostgreSQL with --db for an active/standby pair)", dir, by)
	}
	if err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	return unlock, nil
}
