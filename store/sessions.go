package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// UISession is one logged-in browser of the web dashboard. The store
// never holds what opens it: ID is the hex sha256 of the cookie's value,
// and Sealed the session's admin token and CSRF token encrypted under a
// key derived from that value (package server/web), so a copy of the
// database logs nobody in.
type UISession struct {
	ID        string
	TokenID   string // the admin token's id: revoking it ends the session
	Sealed    []byte
	Principal string // JSON of the api.Principal the token was at login
	CreatedAt time.Time
	ExpiresAt time.Time
}

// PutUISession stores a new session. It first deletes the expired ones
// and, when max sessions are kept already, the oldest, so that logging in
// forever cannot fill the database.
func (t *Tx) PutUISession(ctx context.Context, s *UISession, now time.Time, max int) error {
	if _, err := t.exec(ctx, `DELETE FROM ui_sessions WHERE expires_at <= ?`, ms(now)); err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	var n int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM ui_sessions`).Scan(&n); err != nil {
		return fmt.Errorf("count sessions: %w", err)
	}
	if n >= max {
		_, err := t.exec(ctx, `DELETE FROM ui_sessions WHERE id IN (SELECT id FROM ui_sessions ORDER BY created_at, id LIMIT ?)`, n-max+1)
		if err != nil {
			return fmt.Errorf("delete the oldest sessions: %w", err)
		}
	}
	_, err := t.exec(ctx, `INSERT INTO ui_sessions (id, token_id, sealed, principal, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
		s.ID, s.TokenID, s.Sealed, s.Principal, ms(s.CreatedAt), ms(s.ExpiresAt))
	if err != nil {
		return fmt.Errorf("insert session: %w", err)
	}
	return nil
}

// UISession returns the session whose id is id, or ErrNotFound (also when
// it has expired at now).
func (s *Store) UISession(ctx context.Context, id string, now time.Time) (*UISession, error) {
	var u UISession
	var created, expires int64
	err := s.queryRow(ctx, `SELECT id, token_id, sealed, principal, created_at, expires_at FROM ui_sessions WHERE id = ? AND expires_at > ?`, id, ms(now)).
		Scan(&u.ID, &u.TokenID, &u.Sealed, &u.Principal, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	u.CreatedAt, u.ExpiresAt = fromMS(created), fromMS(expires)
	return &u, nil
}

// DeleteUISession ends a session (logging out); an unknown id is no error.
func (t *Tx) DeleteUISession(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, `DELETE FROM ui_sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
