package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// HostInventory is one enrolled host's latest inventory with what names
// and selects the host.
type HostInventory struct {
	ID        string
	Hostname  string
	Labels    map[string]string
	LastSeen  time.Time
	Inventory json.RawMessage // nil: the host never sent one
}

// inventoryPage is how many hosts EachInventory reads per query: at about
// 10 KB an inventory, a few MB in memory at a time.
const inventoryPage = 256

// EachInventory calls fn for every enrolled, not revoked, host in host id
// order, with its latest inventory, and stops at fn's first error.
//
// It reads by pages of rows keyed on the host id (each query starts after
// the last id of the one before), so memory holds one page whatever the
// fleet's size, and no connection or read snapshot is held while fn runs:
// fn may write to a slow client. A host enrolled or revoked while it runs
// is included or left out depending on where its id sorts; an id is never
// seen twice.
func (s *Store) EachInventory(ctx context.Context, fn func(*HostInventory) error) error {
	after := ""
	for {
		page, err := s.inventoryPage(ctx, after)
		if err != nil {
			return err
		}
		for _, h := range page {
			if err := fn(h); err != nil {
				return err
			}
		}
		if len(page) < inventoryPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

func (s *Store) inventoryPage(ctx context.Context, after string) ([]*HostInventory, error) {
	return queryAll(ctx, s, "list inventories", `SELECT id, hostname, labels, last_seen, inventory FROM hosts
		WHERE revoked_at = 0 AND id > ? ORDER BY id LIMIT ?`, []any{after, inventoryPage},
		func(rows *sql.Rows) (*HostInventory, error) {
			var h HostInventory
			var labels, inv string
			var seen int64
			if err := rows.Scan(&h.ID, &h.Hostname, &labels, &seen, &inv); err != nil {
				return nil, err
			}
			if err := json.Unmarshal([]byte(labels), &h.Labels); err != nil {
				return nil, fmt.Errorf("host %s labels: %w", h.ID, err)
			}
			h.LastSeen = fromMS(seen)
			if inv != "" {
				h.Inventory = json.RawMessage(inv)
			}
			return &h, nil
		})
}
