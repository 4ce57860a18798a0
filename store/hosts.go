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

// Host is one enrolled host as stored.
type Host struct {
	ID            string
	Hostname      string
	MachineID     string
	TokenHash     string // hex sha256 of the host credential
	Channel       string
	Labels        map[string]string
	EnrolledAt    time.Time
	EnrolledBy    string // enrollment token id
	RevokedAt     time.Time
	LastSeen      time.Time
	KernelRelease string
	BuildID       string
	BootID        string
	AgentVersion  string
	Health        string
	HealthDetail  string
	Patches       []api.PatchState
	Inventory     json.RawMessage
}

// Checkin is the part of a host row a check-in rewrites.
type Checkin struct {
	HostID string
	At     time.Time
	api.Checkin
}

const hostCols = `id, hostname, machine_id, token_hash, channel, labels, enrolled_at, enrolled_by, revoked_at,
	last_seen, kernel_release, build_id, boot_id, agent_version, health, health_detail, patches, inventory`

func scanHost(sc interface{ Scan(...any) error }) (*Host, error) {
	var h Host
	var labels, patches, inv string
	var enrolled, revoked, seen int64
	err := sc.Scan(&h.ID, &h.Hostname, &h.MachineID, &h.TokenHash, &h.Channel, &labels, &enrolled, &h.EnrolledBy, &revoked,
		&seen, &h.KernelRelease, &h.BuildID, &h.BootID, &h.AgentVersion, &h.Health, &h.HealthDetail, &patches, &inv)
	if err != nil {
		return nil, err
	}
	h.EnrolledAt, h.RevokedAt, h.LastSeen = fromMS(enrolled), fromMS(revoked), fromMS(seen)
	if err := json.Unmarshal([]byte(labels), &h.Labels); err != nil {
		return nil, fmt.Errorf("host %s labels: %w", h.ID, err)
	}
	if err := json.Unmarshal([]byte(patches), &h.Patches); err != nil {
		return nil, fmt.Errorf("host %s patches: %w", h.ID, err)
	}
	if inv != "" {
		h.Inventory = json.RawMessage(inv)
	}
	return &h, nil
}

// InsertHost adds a newly enrolled host.
func (t *Tx) InsertHost(ctx context.Context, h *Host) error {
	labels, _ := json.Marshal(nonNilMap(h.Labels))
	patches, _ := json.Marshal(nonNilSlice(h.Patches))
	_, err := t.exec(ctx, `INSERT INTO hosts (`+hostCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		h.ID, h.Hostname, h.MachineID, h.TokenHash, h.Channel, string(labels), ms(h.EnrolledAt), h.EnrolledBy, ms(h.RevokedAt),
		ms(h.LastSeen), h.KernelRelease, h.BuildID, h.BootID, h.AgentVersion, h.Health, h.HealthDetail, string(patches), string(h.Inventory))
	if err != nil {
		return fmt.Errorf("insert host %s: %w", h.ID, err)
	}
	return nil
}

// SaveCheckin records a host's check-in. Inventory is replaced only when the
// check-in carries one, the host name only when it carries one.
func (t *Tx) SaveCheckin(ctx context.Context, c *Checkin) error {
	patches, _ := json.Marshal(nonNilSlice(c.Patches))
	_, err := t.exec(ctx, `UPDATE hosts SET last_seen = ?, hostname = CASE WHEN ? = '' THEN hostname ELSE ? END, kernel_release = ?, build_id = ?, boot_id = ?,
		agent_version = ?, health = ?, health_detail = ?, patches = ? WHERE id = ?`,
		ms(c.At), c.Hostname, c.Hostname, c.KernelRelease, c.BuildID, c.BootID, c.AgentVersion, c.Health, c.HealthDetail, string(patches), c.HostID)
	if err != nil {
		return fmt.Errorf("save check-in of %s: %w", c.HostID, err)
	}
	if len(c.Inventory) > 0 {
		if _, err := t.exec(ctx, `UPDATE hosts SET inventory = ? WHERE id = ?`, string(c.Inventory), c.HostID); err != nil {
			return fmt.Errorf("save inventory of %s: %w", c.HostID, err)
		}
	}
	return nil
}

// RevokeHost revokes a host's credential; it returns ErrNotFound for an
// unknown or already revoked host.
func (t *Tx) RevokeHost(ctx context.Context, id string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE hosts SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, ms(at), id)
	if err != nil {
		return fmt.Errorf("revoke host %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetHostLabels replaces an enrolled host's labels; it returns
// ErrNotFound for an unknown or revoked host.
func (t *Tx) SetHostLabels(ctx context.Context, id string, labels map[string]string) error {
	b, _ := json.Marshal(nonNilMap(labels))
	res, err := t.exec(ctx, `UPDATE hosts SET labels = ? WHERE id = ? AND revoked_at = 0`, string(b), id)
	if err != nil {
		return fmt.Errorf("set labels of host %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ListHosts returns every host, revoked ones included.
func (s *Store) ListHosts(ctx context.Context) ([]*Host, error) {
	return queryAll(ctx, s, "list hosts", `SELECT `+hostCols+` FROM hosts ORDER BY enrolled_at, id`, nil,
		func(rows *sql.Rows) (*Host, error) { return scanHost(rows) })
}

// GetHost returns one host.
func (s *Store) GetHost(ctx context.Context, id string) (*Host, error) {
	h, err := scanHost(s.queryRow(ctx, `SELECT `+hostCols+` FROM hosts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get host %s: %w", id, err)
	}
	return h, nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
