package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/stent-dev/stent/api"
)

// PutPlanAction inserts or replaces one of the live plan's actions.
func (t *Tx) PutPlanAction(ctx context.Context, a *api.PlanAction) error {
	spec, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO plan_actions (id, spec, state, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, state = excluded.state, updated_at = excluded.updated_at`,
		a.ID, string(spec), a.State, ms(a.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put plan action %s: %w", a.ID, err)
	}
	return nil
}

// ListPlanActions returns every stored action of the live plan.
func (s *Store) ListPlanActions(ctx context.Context) ([]*api.PlanAction, error) {
	return queryAll(ctx, s, "list plan actions", `SELECT id, spec FROM plan_actions ORDER BY id`, nil,
		func(rows *sql.Rows) (*api.PlanAction, error) {
			var id, spec string
			if err := rows.Scan(&id, &spec); err != nil {
				return nil, err
			}
			var a api.PlanAction
			if err := json.Unmarshal([]byte(spec), &a); err != nil {
				return nil, fmt.Errorf("plan action %s: %w", id, err)
			}
			return &a, nil
		})
}
