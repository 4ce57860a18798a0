package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// EnrollToken lets hosts enroll themselves into a channel with labels.
type EnrollToken struct {
	ID        string
	Name      string
	Hash      string // hex sha256 of the secret
	Channel   string
	Labels    map[string]string
	CreatedAt time.Time
	CreatedBy string
	ExpiresAt time.Time
	MaxUses   int // 0: unlimited
	Uses      int
	RevokedAt time.Time
}

// AdminToken authenticates an operator or a tool.
type AdminToken struct {
	ID        string
	Name      string
	Role      string
	Hash      string
	CreatedAt time.Time
	CreatedBy string
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time
}

// InsertEnrollToken stores a new enrollment token.
func (t *Tx) InsertEnrollToken(ctx context.Context, e *EnrollToken) error {
	labels, _ := json.Marshal(nonNilMap(e.Labels))
	_, err := t.exec(ctx, `INSERT INTO enroll_tokens (id, name, token_hash, channel, labels, created_at, created_by, expires_at, max_uses, uses, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)`,
		e.ID, e.Name, e.Hash, e.Channel, string(labels), ms(e.CreatedAt), e.CreatedBy, ms(e.ExpiresAt), e.MaxUses)
	if err != nil {
		return fmt.Errorf("insert enrollment token: %w", err)
	}
	return nil
}

// UseEnrollToken counts one use of the token with the given hash and
// returns it, or ErrNotFound when no usable token (unknown, expired, revoked
// or used up) has that hash. The check and the count are one statement, so
// concurrent enrollments cannot overrun MaxUses.
func (t *Tx) UseEnrollToken(ctx context.Context, hash string, now time.Time) (*EnrollToken, error) {
	res, err := t.exec(ctx, `UPDATE enroll_tokens SET uses = uses + 1
		WHERE token_hash = ? AND revoked_at = 0 AND expires_at > ? AND (max_uses = 0 OR uses < max_uses)`, hash, ms(now))
	if err != nil {
		return nil, fmt.Errorf("use enrollment token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrNotFound
	}
	e, err := scanEnrollToken(t.queryRow(ctx, `SELECT `+enrollCols+` FROM enroll_tokens WHERE token_hash = ?`, hash))
	if err != nil {
		return nil, fmt.Errorf("use enrollment token: %w", err)
	}
	return e, nil
}

// RevokeEnrollToken revokes a token by id.
func (t *Tx) RevokeEnrollToken(ctx context.Context, id string, at time.Time) error {
	return revoke(ctx, t, "enroll_tokens", id, at)
}

// RevokeAdminToken revokes a token by id and ends its dashboard sessions.
func (t *Tx) RevokeAdminToken(ctx context.Context, id string, at time.Time) error {
	if err := revoke(ctx, t, "admin_tokens", id, at); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM ui_sessions WHERE token_id = ?`, id); err != nil {
		return fmt.Errorf("end the sessions of token %s: %w", id, err)
	}
	return nil
}

func revoke(ctx context.Context, t *Tx, table, id string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE `+table+` SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, ms(at), id)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

const enrollCols = `id, name, token_hash, channel, labels, created_at, created_by, expires_at, max_uses, uses, revoked_at`

func scanEnrollToken(sc interface{ Scan(...any) error }) (*EnrollToken, error) {
	var e EnrollToken
	var labels string
	var created, expires, revoked int64
	if err := sc.Scan(&e.ID, &e.Name, &e.Hash, &e.Channel, &labels, &created, &e.CreatedBy, &expires, &e.MaxUses, &e.Uses, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	e.CreatedAt, e.ExpiresAt, e.RevokedAt = fromMS(created), fromMS(expires), fromMS(revoked)
	if err := json.Unmarshal([]byte(labels), &e.Labels); err != nil {
		return nil, fmt.Errorf("enrollment token %s labels: %w", e.ID, err)
	}
	return &e, nil
}

// ListEnrollTokens returns every enrollment token.
func (s *Store) ListEnrollTokens(ctx context.Context) ([]*EnrollToken, error) {
	return queryAll(ctx, s, "list enrollment tokens", `SELECT `+enrollCols+` FROM enroll_tokens ORDER BY created_at, id`, nil,
		func(rows *sql.Rows) (*EnrollToken, error) { return scanEnrollToken(rows) })
}

// InsertAdminToken stores a new admin token.
func (t *Tx) InsertAdminToken(ctx context.Context, a *AdminToken) error {
	_, err := t.exec(ctx, `INSERT INTO admin_tokens (id, name, role, token_hash, created_at, created_by, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, 0)`, a.ID, a.Name, a.Role, a.Hash, ms(a.CreatedAt), a.CreatedBy, ms(a.ExpiresAt))
	if err != nil {
		return fmt.Errorf("insert admin token: %w", err)
	}
	return nil
}

// AdminTokenByHash returns the admin token with the given hash, revoked or
// expired ones included, or ErrNotFound.
func (s *Store) AdminTokenByHash(ctx context.Context, hash string) (*AdminToken, error) {
	var a AdminToken
	var created, expires, revoked int64
	err := s.queryRow(ctx, `SELECT id, name, role, token_hash, created_at, created_by, expires_at, revoked_at FROM admin_tokens WHERE token_hash = ?`, hash).
		Scan(&a.ID, &a.Name, &a.Role, &a.Hash, &created, &a.CreatedBy, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up admin token: %w", err)
	}
	a.CreatedAt, a.ExpiresAt, a.RevokedAt = fromMS(created), fromMS(expires), fromMS(revoked)
	return &a, nil
}

// ListAdminTokens returns every admin token.
func (s *Store) ListAdminTokens(ctx context.Context) ([]*AdminToken, error) {
	return queryAll(ctx, s, "list admin tokens", `SELECT id, name, role, token_hash, created_at, created_by, expires_at, revoked_at FROM admin_tokens ORDER BY created_at, id`, nil,
		func(rows *sql.Rows) (*AdminToken, error) {
			var a AdminToken
			var created, expires, revoked int64
			if err := rows.Scan(&a.ID, &a.Name, &a.Role, &a.Hash, &created, &a.CreatedBy, &expires, &revoked); err != nil {
				return nil, err
			}
			a.CreatedAt, a.ExpiresAt, a.RevokedAt = fromMS(created), fromMS(expires), fromMS(revoked)
			return &a, nil
		})
}

// PutSetting stores a server setting.
func (t *Tx) PutSetting(ctx context.Context, key, value string) error {
	_, err := t.exec(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

// Settings returns every stored setting.
func (s *Store) Settings(ctx context.Context) (map[string]string, error) {
	rows, err := s.query(ctx, `SELECT key, value FROM settings`)
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("read settings: %w", err)
		}
		m[k] = v
	}
	return m, rows.Err()
}

// EnrollTokenByHash returns the enrollment token with the given hash,
// usable or not, or ErrNotFound.
func (s *Store) EnrollTokenByHash(ctx context.Context, hash string) (*EnrollToken, error) {
	e, err := scanEnrollToken(s.queryRow(ctx, `SELECT `+enrollCols+` FROM enroll_tokens WHERE token_hash = ?`, hash))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("look up enrollment token: %w", err)
	}
	return e, err
}

// Usable reports whether the token can enroll a host at now: not revoked,
// not expired, not used up (UseEnrollToken checks again when counting).
func (e *EnrollToken) Usable(now time.Time) bool {
	return e.RevokedAt.IsZero() && now.Before(e.ExpiresAt) && (e.MaxUses == 0 || e.Uses < e.MaxUses)
}
