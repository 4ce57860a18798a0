package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stent-dev/stent/api"
)

// The fleet's exposure over time: one row per snapshot of the live plan
// (api.ExposurePoint as JSON), keyed by its time in milliseconds.

// InsertExposure stores a snapshot; one at the same millisecond as an
// existing one replaces it.
func (t *Tx) InsertExposure(ctx context.Context, p *api.ExposurePoint) error {
	spec, err := json.Marshal(p)
	if err != nil {
		return err
	}
	at := p.At.UnixMilli()
	if _, err := t.exec(ctx, `DELETE FROM exposure_history WHERE at = ?`, at); err != nil {
		return fmt.Errorf("insert exposure snapshot: %w", err)
	}
	if _, err := t.exec(ctx, `INSERT INTO exposure_history (at, spec) VALUES (?, ?)`, at, string(spec)); err != nil {
		return fmt.Errorf("insert exposure snapshot: %w", err)
	}
	return nil
}

// PruneExposure deletes the snapshots taken before before, and returns
// how many.
func (t *Tx) PruneExposure(ctx context.Context, before time.Time) (int64, error) {
	res, err := t.exec(ctx, `DELETE FROM exposure_history WHERE at < ?`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune exposure snapshots: %w", err)
	}
	return res.RowsAffected()
}

// ListExposure returns the snapshots taken at since or later, oldest
// first; at most limit of them, the newest, when limit > 0.
func (s *Store) ListExposure(ctx context.Context, since time.Time, limit int) ([]api.ExposurePoint, error) {
	q := `SELECT at, spec FROM exposure_history WHERE at >= ? ORDER BY at DESC`
	args := []any{since.UnixMilli()}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	out, err := queryAll(ctx, s, "list exposure snapshots", q, args, func(rows *sql.Rows) (api.ExposurePoint, error) {
		var at int64
		var spec string
		if err := rows.Scan(&at, &spec); err != nil {
			return api.ExposurePoint{}, err
		}
		var p api.ExposurePoint
		if err := json.Unmarshal([]byte(spec), &p); err != nil {
			return p, fmt.Errorf("exposure snapshot %d: %w", at, err)
		}
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
