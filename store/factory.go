package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stent-dev/stent/api"
)

// The patch factory's state: uploads and per-kernel-build jobs, each kept
// as JSON of its API form beside the columns queries order and claim by.

// PutFactoryUpload inserts or replaces an upload; its first SeenAt stays.
func (t *Tx) PutFactoryUpload(ctx context.Context, u *api.FactoryUpload) error {
	b, _ := json.Marshal(u)
	_, err := t.exec(ctx, `INSERT INTO factory_uploads (version, spec, seen_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (version) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`,
		u.Version, string(b), ms(u.SeenAt), ms(u.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put factory upload %s: %w", u.Version, err)
	}
	return nil
}

// GetFactoryUpload returns one upload; ErrNotFound when there is none.
func (t *Tx) GetFactoryUpload(ctx context.Context, version string) (*api.FactoryUpload, error) {
	var spec string
	var seen int64
	err := t.queryRow(ctx, `SELECT spec, seen_at FROM factory_uploads WHERE version = ?`, version).Scan(&spec, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get factory upload %s: %w", version, err)
	}
	var u api.FactoryUpload
	if err := json.Unmarshal([]byte(spec), &u); err != nil {
		return nil, fmt.Errorf("factory upload %s: %w", version, err)
	}
	u.SeenAt = fromMS(seen)
	return &u, nil
}

// ListFactoryUploads returns every upload, the newest seen first.
func (s *Store) ListFactoryUploads(ctx context.Context) ([]*api.FactoryUpload, error) {
	return queryAll(ctx, s, "list factory uploads", `SELECT version, spec, seen_at FROM factory_uploads ORDER BY seen_at DESC, version DESC`, nil,
		func(rows *sql.Rows) (*api.FactoryUpload, error) {
			var version, spec string
			var seen int64
			if err := rows.Scan(&version, &spec, &seen); err != nil {
				return nil, err
			}
			var u api.FactoryUpload
			if err := json.Unmarshal([]byte(spec), &u); err != nil {
				return nil, fmt.Errorf("factory upload %s: %w", version, err)
			}
			u.SeenAt = fromMS(seen)
			return &u, nil
		})
}

// PutFactoryJob inserts or replaces a job; its first CreatedAt stays.
func (t *Tx) PutFactoryJob(ctx context.Context, j *api.FactoryJob) error {
	b, _ := json.Marshal(j)
	_, err := t.exec(ctx, `INSERT INTO factory_jobs (id, upload, kernel, state, worker, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, worker = excluded.worker, spec = excluded.spec, updated_at = excluded.updated_at`,
		j.ID, j.Upload, j.Kernel, j.State, j.Worker, string(b), ms(j.CreatedAt), ms(j.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put factory job %s: %w", j.ID, err)
	}
	return nil
}

// GetFactoryJob returns one job; ErrNotFound when there is none.
func (t *Tx) GetFactoryJob(ctx context.Context, id string) (*api.FactoryJob, error) {
	var spec string
	var created int64
	err := t.queryRow(ctx, `SELECT spec, created_at FROM factory_jobs WHERE id = ?`, id).Scan(&spec, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get factory job %s: %w", id, err)
	}
	var j api.FactoryJob
	if err := json.Unmarshal([]byte(spec), &j); err != nil {
		return nil, fmt.Errorf("factory job %s: %w", id, err)
	}
	j.CreatedAt = fromMS(created)
	return &j, nil
}

// ListFactoryJobs returns every job by upload and kernel.
func (s *Store) ListFactoryJobs(ctx context.Context) ([]*api.FactoryJob, error) {
	return queryAll(ctx, s, "list factory jobs", `SELECT id, spec, created_at FROM factory_jobs ORDER BY upload, kernel`, nil,
		func(rows *sql.Rows) (*api.FactoryJob, error) {
			var id, spec string
			var created int64
			if err := rows.Scan(&id, &spec, &created); err != nil {
				return nil, err
			}
			var j api.FactoryJob
			if err := json.Unmarshal([]byte(spec), &j); err != nil {
				return nil, fmt.Errorf("factory job %s: %w", id, err)
			}
			j.CreatedAt = fromMS(created)
			return &j, nil
		})
}
