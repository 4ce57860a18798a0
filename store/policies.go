package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/stent-dev/stent/api"
)

// InsertPolicy stores a new version of the planning policy. Versions are
// never changed or deleted: the old ones stay for the record.
func (t *Tx) InsertPolicy(ctx context.Context, v *api.PolicyVersion) error {
	spec, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := t.exec(ctx, `INSERT INTO policies (version, spec) VALUES (?, ?)`, v.Version, string(spec)); err != nil {
		return fmt.Errorf("insert policy version %d: %w", v.Version, err)
	}
	return nil
}

// ListPolicies returns every version of the planning policy, oldest first.
func (s *Store) ListPolicies(ctx context.Context) ([]*api.PolicyVersion, error) {
	return queryAll(ctx, s, "list policies", `SELECT version, spec FROM policies ORDER BY version`, nil,
		func(rows *sql.Rows) (*api.PolicyVersion, error) {
			var version int
			var spec string
			if err := rows.Scan(&version, &spec); err != nil {
				return nil, err
			}
			var v api.PolicyVersion
			if err := json.Unmarshal([]byte(spec), &v); err != nil {
				return nil, fmt.Errorf("policy version %d: %w", version, err)
			}
			return &v, nil
		})
}
