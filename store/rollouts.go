package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stent-dev/stent/api"
)

// InsertBundle stores a published bundle; publishing the same bytes again
// is a no-op and reports inserted == false.
func (t *Tx) InsertBundle(ctx context.Context, b *api.BundleInfo, data []byte) (inserted bool, err error) {
	cves, _ := json.Marshal(nonNilSlice(b.CVEs))
	res, err := t.exec(ctx, `INSERT INTO bundles (sha256, name, kernel_release, build_id, level, replace_all, cves, size, data, published_at, published_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING`,
		b.SHA256, b.Name, b.KernelRelease, b.BuildID, b.Level, boolInt(b.Replace), string(cves), b.Size, data, ms(b.Published), b.PublishedBy)
	if err != nil {
		return false, fmt.Errorf("insert bundle %s: %w", b.SHA256, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// ListBundles returns every published bundle's description.
func (s *Store) ListBundles(ctx context.Context) ([]*api.BundleInfo, error) {
	return queryAll(ctx, s, "list bundles", `SELECT sha256, name, kernel_release, build_id, level, replace_all, cves, size, published_at, published_by FROM bundles ORDER BY published_at, sha256`, nil,
		func(rows *sql.Rows) (*api.BundleInfo, error) {
			var b api.BundleInfo
			var repl int
			var cves string
			var pub int64
			if err := rows.Scan(&b.SHA256, &b.Name, &b.KernelRelease, &b.BuildID, &b.Level, &repl, &cves, &b.Size, &pub, &b.PublishedBy); err != nil {
				return nil, err
			}
			b.Replace, b.Published = repl != 0, fromMS(pub)
			if err := json.Unmarshal([]byte(cves), &b.CVEs); err != nil {
				return nil, fmt.Errorf("bundle %s cves: %w", b.SHA256, err)
			}
			return &b, nil
		})
}

// BundleData returns a bundle's bytes.
func (s *Store) BundleData(ctx context.Context, sha string) ([]byte, error) {
	var data []byte
	err := s.queryRow(ctx, `SELECT data FROM bundles WHERE sha256 = ?`, sha).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", sha, err)
	}
	return data, nil
}

// Rollout is a staged rollout as stored.
type Rollout struct {
	ID            string
	Seq           int64 // creation order
	Bundle        string
	Name          string
	KernelRelease string
	Level         int64
	Channel       string
	Selector      map[string]string
	Canary        int
	Waves         []int
	MaxFailurePct float64
	OfflineAfter  time.Duration
	State         string
	Wave          int
	Reason        string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	CreatedBy     string
	// OnlyHosts, when set, limits the rollout to these host ids.
	OnlyHosts []string
}

// RolloutHost is one host's place and progress in a rollout.
type RolloutHost struct {
	RolloutID string
	HostID    string
	Wave      int
	State     string
	Error     string
	AppliedAt time.Time
	UpdatedAt time.Time
}

// InsertRollout stores a new rollout.
func (t *Tx) InsertRollout(ctx context.Context, r *Rollout) error {
	sel, _ := json.Marshal(nonNilMap(r.Selector))
	waves, _ := json.Marshal(nonNilSlice(r.Waves))
	only, _ := json.Marshal(nonNilSlice(r.OnlyHosts))
	_, err := t.exec(ctx, `INSERT INTO rollouts (id, seq, bundle_sha256, name, kernel_release, level, channel, selector, canary, waves,
		max_failure_pct, offline_after_ms, state, wave, reason, created_at, updated_at, created_by, only_hosts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Seq, r.Bundle, r.Name, r.KernelRelease, r.Level, r.Channel, string(sel), r.Canary, string(waves),
		r.MaxFailurePct, r.OfflineAfter.Milliseconds(), r.State, r.Wave, r.Reason, ms(r.CreatedAt), ms(r.UpdatedAt), r.CreatedBy, string(only))
	if err != nil {
		return fmt.Errorf("insert rollout %s: %w", r.ID, err)
	}
	return nil
}

// UpdateRollout stores a rollout's state, wave, reason and failure threshold.
func (t *Tx) UpdateRollout(ctx context.Context, r *Rollout) error {
	_, err := t.exec(ctx, `UPDATE rollouts SET state = ?, wave = ?, reason = ?, max_failure_pct = ?, updated_at = ? WHERE id = ?`,
		r.State, r.Wave, r.Reason, r.MaxFailurePct, ms(r.UpdatedAt), r.ID)
	if err != nil {
		return fmt.Errorf("update rollout %s: %w", r.ID, err)
	}
	return nil
}

// ListRollouts returns every rollout in creation order.
func (s *Store) ListRollouts(ctx context.Context) ([]*Rollout, error) {
	return queryAll(ctx, s, "list rollouts", `SELECT id, seq, bundle_sha256, name, kernel_release, level, channel, selector, canary, waves,
		max_failure_pct, offline_after_ms, state, wave, reason, created_at, updated_at, created_by, only_hosts FROM rollouts ORDER BY seq`, nil,
		func(rows *sql.Rows) (*Rollout, error) {
			var r Rollout
			var sel, waves, only string
			var off, created, updated int64
			if err := rows.Scan(&r.ID, &r.Seq, &r.Bundle, &r.Name, &r.KernelRelease, &r.Level, &r.Channel, &sel, &r.Canary, &waves,
				&r.MaxFailurePct, &off, &r.State, &r.Wave, &r.Reason, &created, &updated, &r.CreatedBy, &only); err != nil {
				return nil, err
			}
			if err := json.Unmarshal([]byte(only), &r.OnlyHosts); err != nil {
				return nil, fmt.Errorf("rollout %s only_hosts: %w", r.ID, err)
			}
			if len(r.OnlyHosts) == 0 {
				r.OnlyHosts = nil
			}
			r.OfflineAfter = time.Duration(off) * time.Millisecond
			r.CreatedAt, r.UpdatedAt = fromMS(created), fromMS(updated)
			if err := json.Unmarshal([]byte(sel), &r.Selector); err != nil {
				return nil, fmt.Errorf("rollout %s selector: %w", r.ID, err)
			}
			if err := json.Unmarshal([]byte(waves), &r.Waves); err != nil {
				return nil, fmt.Errorf("rollout %s waves: %w", r.ID, err)
			}
			return &r, nil
		})
}

// PutRolloutHost inserts or replaces one host's row in a rollout.
func (t *Tx) PutRolloutHost(ctx context.Context, h *RolloutHost) error {
	_, err := t.exec(ctx, `INSERT INTO rollout_hosts (rollout_id, host_id, wave, state, error, applied_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (rollout_id, host_id) DO UPDATE SET wave = excluded.wave, state = excluded.state, error = excluded.error,
		applied_at = excluded.applied_at, updated_at = excluded.updated_at`,
		h.RolloutID, h.HostID, h.Wave, h.State, h.Error, ms(h.AppliedAt), ms(h.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put rollout host %s/%s: %w", h.RolloutID, h.HostID, err)
	}
	return nil
}

// ListRolloutHosts returns the host rows of one rollout, or of every
// rollout when rolloutID is empty.
func (s *Store) ListRolloutHosts(ctx context.Context, rolloutID string) ([]*RolloutHost, error) {
	q := `SELECT rollout_id, host_id, wave, state, error, applied_at, updated_at FROM rollout_hosts`
	var args []any
	if rolloutID != "" {
		q += ` WHERE rollout_id = ?`
		args = append(args, rolloutID)
	}
	return queryAll(ctx, s, "list rollout hosts", q+` ORDER BY rollout_id, wave, host_id`, args,
		func(rows *sql.Rows) (*RolloutHost, error) {
			var h RolloutHost
			var applied, updated int64
			if err := rows.Scan(&h.RolloutID, &h.HostID, &h.Wave, &h.State, &h.Error, &applied, &updated); err != nil {
				return nil, err
			}
			h.AppliedAt, h.UpdatedAt = fromMS(applied), fromMS(updated)
			return &h, nil
		})
}

// InsertReport records an agent's report once: a report whose request id the
// host already used is ignored and inserted is false.
func (t *Tx) InsertReport(ctx context.Context, hostID string, r *api.Report, received time.Time) (inserted bool, err error) {
	res, err := t.exec(ctx, `INSERT INTO reports (host_id, request_id, action, rollout_id, name, bundle_sha256, result, error, at, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, request_id) DO NOTHING`,
		hostID, r.RequestID, r.Action, r.Rollout, r.Name, r.Bundle, r.Result, r.Error, ms(r.At), ms(received))
	if err != nil {
		return false, fmt.Errorf("insert report %s of %s: %w", r.RequestID, hostID, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// CountReports counts a host's reports of one action in one rollout with a
// result; the reliability tests use it to prove nothing ran twice.
func (s *Store) CountReports(ctx context.Context, hostID, rolloutID, action, result string) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM reports WHERE host_id = ? AND rollout_id = ? AND action = ? AND result = ?`,
		hostID, rolloutID, action, result).Scan(&n)
	return n, err
}

// InsertAudit appends to the audit log.
func (t *Tx) InsertAudit(ctx context.Context, e *api.AuditEntry) error {
	_, err := t.exec(ctx, `INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)`,
		ms(e.At), e.Actor, e.Action, e.Target, string(e.Detail))
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	AfterID int64  // entries with a larger id
	Action  string // exact action
	Target  string // exact target
	Limit   int    // default 100
	// BeforeID, when set, selects entries with a smaller id; Newest
	// orders the newest first.
	BeforeID int64
	Newest   bool
}

// ListAudit returns audit entries oldest first, or newest first with
// f.Newest.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]*api.AuditEntry, error) {
	q := `SELECT id, at, actor, action, target, detail FROM audit WHERE id > ?`
	args := []any{f.AfterID}
	if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, f.Action)
	}
	if f.Target != "" {
		q += ` AND target = ?`
		args = append(args, f.Target)
	}
	if f.BeforeID > 0 {
		q += ` AND id < ?`
		args = append(args, f.BeforeID)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Newest {
		q += ` ORDER BY id DESC LIMIT ?`
	} else {
		q += ` ORDER BY id LIMIT ?`
	}
	args = append(args, f.Limit)
	return queryAll(ctx, s, "list audit", q, args,
		func(rows *sql.Rows) (*api.AuditEntry, error) {
			var e api.AuditEntry
			var at int64
			var detail string
			if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &detail); err != nil {
				return nil, err
			}
			e.At = fromMS(at)
			if detail != "" {
				e.Detail = json.RawMessage(detail)
			}
			return &e, nil
		})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PruneHost keeps a host's newest keep reports and newest keep audit
// entries it caused (actor "host:ID") and deletes the older ones, so that
// what one host credential can make the server store is bounded.
func (t *Tx) PruneHost(ctx context.Context, hostID string, keep int) error {
	_, err := t.exec(ctx, `DELETE FROM reports WHERE host_id = ? AND received_at < (
		SELECT received_at FROM reports WHERE host_id = ? ORDER BY received_at DESC LIMIT 1 OFFSET ?)`, hostID, hostID, keep-1)
	if err != nil {
		return fmt.Errorf("prune reports of %s: %w", hostID, err)
	}
	actor := "host:" + hostID
	_, err = t.exec(ctx, `DELETE FROM audit WHERE actor = ? AND id < (
		SELECT id FROM audit WHERE actor = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, actor, actor, keep-1)
	if err != nil {
		return fmt.Errorf("prune audit of %s: %w", hostID, err)
	}
	return nil
}

// CountHostRecords returns how many reports and audit entries host hostID
// has stored.
func (s *Store) CountHostRecords(ctx context.Context, hostID string) (reports, audit int, err error) {
	if err = s.queryRow(ctx, `SELECT COUNT(*) FROM reports WHERE host_id = ?`, hostID).Scan(&reports); err != nil {
		return 0, 0, err
	}
	err = s.queryRow(ctx, `SELECT COUNT(*) FROM audit WHERE actor = ?`, "host:"+hostID).Scan(&audit)
	return reports, audit, err
}
