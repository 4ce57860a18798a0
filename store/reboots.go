package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stent-dev/stent/api"
)

// Kernel updates and reboots: maintenance windows, kernel rollouts and
// their hosts, reboot leases and approvals. Windows and rollouts are kept
// as JSON of their API form (the server validates them before they get
// here); the per-host rows and leases have columns, since queries count
// and expire them.

// PutWindow inserts or replaces a maintenance window.
func (t *Tx) PutWindow(ctx context.Context, w *api.MaintenanceWindow) error {
	spec, _ := json.Marshal(w)
	_, err := t.exec(ctx, `INSERT INTO windows (name, spec) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec`, w.Name, string(spec))
	if err != nil {
		return fmt.Errorf("put window %s: %w", w.Name, err)
	}
	return nil
}

// DeleteWindow removes a window; ErrNotFound when there is none.
func (t *Tx) DeleteWindow(ctx context.Context, name string) error {
	res, err := t.exec(ctx, `DELETE FROM windows WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete window %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ListWindows returns every maintenance window by name.
func (s *Store) ListWindows(ctx context.Context) ([]*api.MaintenanceWindow, error) {
	return queryAll(ctx, s, "list windows", `SELECT name, spec FROM windows ORDER BY name`, nil,
		func(rows *sql.Rows) (*api.MaintenanceWindow, error) {
			var name, spec string
			if err := rows.Scan(&name, &spec); err != nil {
				return nil, err
			}
			var w api.MaintenanceWindow
			if err := json.Unmarshal([]byte(spec), &w); err != nil {
				return nil, fmt.Errorf("window %s: %w", name, err)
			}
			return &w, nil
		})
}

// KernelRollout is a kernel rollout as stored: its API form without
// Counts and Targets, which come from KernelHost rows.
type KernelRollout struct {
	api.KernelRollout
	Seq       int64
	UpdatedAt time.Time
}

// KernelHost is one host's progress in a kernel rollout.
type KernelHost struct {
	RolloutID string
	HostID    string
	State     string
	Detail    string
	UpdatedAt time.Time
}

// InsertKernelRollout stores a new kernel rollout.
func (t *Tx) InsertKernelRollout(ctx context.Context, r *KernelRollout) error {
	spec := r.KernelRollout
	spec.Counts, spec.Targets = nil, nil
	b, _ := json.Marshal(spec)
	_, err := t.exec(ctx, `INSERT INTO kernel_rollouts (id, seq, spec, state, halt, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		r.ID, r.Seq, string(b), r.State, r.Halt, ms(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("insert kernel rollout %s: %w", r.ID, err)
	}
	return nil
}

// UpdateKernelRollout stores a kernel rollout's state and halt reason.
func (t *Tx) UpdateKernelRollout(ctx context.Context, r *KernelRollout) error {
	_, err := t.exec(ctx, `UPDATE kernel_rollouts SET state = ?, halt = ?, updated_at = ? WHERE id = ?`, r.State, r.Halt, ms(r.UpdatedAt), r.ID)
	if err != nil {
		return fmt.Errorf("update kernel rollout %s: %w", r.ID, err)
	}
	return nil
}

// ListKernelRollouts returns every kernel rollout in creation order.
func (s *Store) ListKernelRollouts(ctx context.Context) ([]*KernelRollout, error) {
	return queryAll(ctx, s, "list kernel rollouts", `SELECT id, seq, spec, state, halt, updated_at FROM kernel_rollouts ORDER BY seq`, nil,
		func(rows *sql.Rows) (*KernelRollout, error) {
			var r KernelRollout
			var id, spec string
			var updated int64
			if err := rows.Scan(&id, &r.Seq, &spec, &r.State, &r.Halt, &updated); err != nil {
				return nil, err
			}
			state, halt := r.State, r.Halt
			if err := json.Unmarshal([]byte(spec), &r.KernelRollout); err != nil {
				return nil, fmt.Errorf("kernel rollout %s: %w", id, err)
			}
			r.ID, r.State, r.Halt, r.UpdatedAt = id, state, halt, fromMS(updated)
			return &r, nil
		})
}

// PutKernelHost inserts or replaces one host's row in a kernel rollout.
func (t *Tx) PutKernelHost(ctx context.Context, h *KernelHost) error {
	_, err := t.exec(ctx, `INSERT INTO kernel_hosts (rollout_id, host_id, state, detail, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (rollout_id, host_id) DO UPDATE SET state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at`,
		h.RolloutID, h.HostID, h.State, h.Detail, ms(h.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put kernel host %s/%s: %w", h.RolloutID, h.HostID, err)
	}
	return nil
}

// ListKernelHosts returns the host rows of every kernel rollout.
func (s *Store) ListKernelHosts(ctx context.Context) ([]*KernelHost, error) {
	return queryAll(ctx, s, "list kernel hosts", `SELECT rollout_id, host_id, state, detail, updated_at FROM kernel_hosts ORDER BY rollout_id, host_id`, nil,
		func(rows *sql.Rows) (*KernelHost, error) {
			var h KernelHost
			var updated int64
			if err := rows.Scan(&h.RolloutID, &h.HostID, &h.State, &h.Detail, &updated); err != nil {
				return nil, err
			}
			h.UpdatedAt = fromMS(updated)
			return &h, nil
		})
}

// Lease is a reboot lease: the host may be down until ExpiresAt. Group is
// the name of the maintenance window whose budget it counts against ("" for
// hosts no window covers).
type Lease struct {
	ID        string
	HostID    string
	Group     string
	Rollout   string
	BootID    string // the host's boot when the lease was granted
	GrantedAt time.Time
	ExpiresAt time.Time
}

const leaseCols = `id, host_id, grp, rollout_id, boot_id, granted_at, expires_at`

func scanLease(sc interface{ Scan(...any) error }) (*Lease, error) {
	var l Lease
	var granted, expires int64
	if err := sc.Scan(&l.ID, &l.HostID, &l.Group, &l.Rollout, &l.BootID, &granted, &expires); err != nil {
		return nil, err
	}
	l.GrantedAt, l.ExpiresAt = fromMS(granted), fromMS(expires)
	return &l, nil
}

func (t *Tx) leases(ctx context.Context, where string, args ...any) ([]*Lease, error) {
	rows, err := t.tx.QueryContext(ctx, t.s.rebind(`SELECT `+leaseCols+` FROM reboot_leases WHERE `+where+` ORDER BY granted_at, id`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// lockLeases serialises lease decisions: on PostgreSQL two servers (or a
// server and a stale former leader) must not both count a group's leases
// and grant over its budget. SQLite transactions here are already
// exclusive (BEGIN IMMEDIATE).
func (t *Tx) lockLeases(ctx context.Context) error {
	if t.s.engine != Postgres {
		return nil
	}
	if _, err := t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7352903)`); err != nil {
		return fmt.Errorf("lock leases: %w", err)
	}
	return nil
}

// ExpireLeases deletes the leases that expired at now and returns them.
func (t *Tx) ExpireLeases(ctx context.Context, now time.Time) ([]*Lease, error) {
	if err := t.lockLeases(ctx); err != nil {
		return nil, err
	}
	out, err := t.leases(ctx, `expires_at <= ?`, ms(now))
	if err != nil {
		return nil, fmt.Errorf("expired leases: %w", err)
	}
	for _, l := range out {
		if _, err := t.exec(ctx, `DELETE FROM reboot_leases WHERE id = ?`, l.ID); err != nil {
			return nil, fmt.Errorf("expire lease %s: %w", l.ID, err)
		}
	}
	return out, nil
}

// GrantLease decides and grants a lease in one step under the lease lock:
// it reads the unexpired leases of l.Group and of l.HostID as stored now,
// asks decide whether to grant given the group's (the host's own lease,
// if it has one, is passed apart), and inserts l when decide says so.
// Leases that expired by now are deleted first and returned. A host that
// already holds an unexpired lease gets it back (granted, own set) without
// decide being asked.
func (t *Tx) GrantLease(ctx context.Context, l *Lease, now time.Time, decide func(held []*Lease) bool) (granted bool, own *Lease, held, expired []*Lease, err error) {
	if expired, err = t.ExpireLeases(ctx, now); err != nil {
		return false, nil, nil, nil, err
	}
	mine, err := t.leases(ctx, `host_id = ?`, l.HostID)
	if err != nil {
		return false, nil, nil, expired, fmt.Errorf("lease of %s: %w", l.HostID, err)
	}
	if len(mine) > 0 {
		return true, mine[0], nil, expired, nil
	}
	if held, err = t.leases(ctx, `grp = ? AND expires_at > ?`, l.Group, ms(now)); err != nil {
		return false, nil, nil, expired, fmt.Errorf("leases of group %q: %w", l.Group, err)
	}
	if !decide(held) {
		return false, nil, held, expired, nil
	}
	_, err = t.exec(ctx, `INSERT INTO reboot_leases (`+leaseCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		l.ID, l.HostID, l.Group, l.Rollout, l.BootID, ms(l.GrantedAt), ms(l.ExpiresAt))
	if err != nil {
		return false, nil, held, expired, fmt.Errorf("insert lease %s: %w", l.ID, err)
	}
	return true, nil, held, expired, nil
}

// ReleaseLease deletes the host's lease and returns it (nil when it held
// none).
func (t *Tx) ReleaseLease(ctx context.Context, hostID string) (*Lease, error) {
	if err := t.lockLeases(ctx); err != nil {
		return nil, err
	}
	ls, err := t.leases(ctx, `host_id = ?`, hostID)
	if err != nil || len(ls) == 0 {
		return nil, err
	}
	if _, err := t.exec(ctx, `DELETE FROM reboot_leases WHERE host_id = ?`, hostID); err != nil {
		return nil, fmt.Errorf("release lease of %s: %w", hostID, err)
	}
	return ls[0], nil
}

// ListLeases returns every stored lease, expired ones included.
func (s *Store) ListLeases(ctx context.Context) ([]*Lease, error) {
	return queryAll(ctx, s, "list leases", `SELECT `+leaseCols+` FROM reboot_leases ORDER BY granted_at, id`, nil,
		func(rows *sql.Rows) (*Lease, error) { return scanLease(rows) })
}

// Approval is an operator's approval of one host's emergency reboot.
type Approval struct {
	HostID string
	By     string
	Reason string
	At     time.Time
}

// PutApproval records an approval, replacing an earlier one.
func (t *Tx) PutApproval(ctx context.Context, a *Approval) error {
	_, err := t.exec(ctx, `INSERT INTO reboot_approvals (host_id, approved_by, reason, at) VALUES (?, ?, ?, ?)
		ON CONFLICT (host_id) DO UPDATE SET approved_by = excluded.approved_by, reason = excluded.reason, at = excluded.at`,
		a.HostID, a.By, a.Reason, ms(a.At))
	if err != nil {
		return fmt.Errorf("approve %s: %w", a.HostID, err)
	}
	return nil
}

// DeleteApproval removes a host's approval (used up by its reboot).
func (t *Tx) DeleteApproval(ctx context.Context, hostID string) error {
	if _, err := t.exec(ctx, `DELETE FROM reboot_approvals WHERE host_id = ?`, hostID); err != nil {
		return fmt.Errorf("delete approval of %s: %w", hostID, err)
	}
	return nil
}

// ListApprovals returns every standing approval.
func (s *Store) ListApprovals(ctx context.Context) ([]*Approval, error) {
	return queryAll(ctx, s, "list approvals", `SELECT host_id, approved_by, reason, at FROM reboot_approvals ORDER BY host_id`, nil,
		func(rows *sql.Rows) (*Approval, error) {
			var a Approval
			var at int64
			if err := rows.Scan(&a.HostID, &a.By, &a.Reason, &at); err != nil {
				return nil, err
			}
			a.At = fromMS(at)
			return &a, nil
		})
}

// SaveKernelCheckin stores the kernel part of a host's last check-in.
func (t *Tx) SaveKernelCheckin(ctx context.Context, hostID string, kc *api.KernelCheckin) error {
	b, _ := json.Marshal(kc)
	if _, err := t.exec(ctx, `UPDATE hosts SET kernel = ? WHERE id = ?`, string(b), hostID); err != nil {
		return fmt.Errorf("save kernel check-in of %s: %w", hostID, err)
	}
	return nil
}

// KernelCheckins returns the last stored kernel check-in of every host
// that sent one.
func (s *Store) KernelCheckins(ctx context.Context) (map[string]*api.KernelCheckin, error) {
	type row struct {
		id string
		kc *api.KernelCheckin
	}
	rows, err := queryAll(ctx, s, "list kernel check-ins", `SELECT id, kernel FROM hosts WHERE kernel <> ''`, nil,
		func(rows *sql.Rows) (row, error) {
			var id, kernel string
			if err := rows.Scan(&id, &kernel); err != nil {
				return row{}, err
			}
			var kc api.KernelCheckin
			if err := json.Unmarshal([]byte(kernel), &kc); err != nil {
				return row{}, fmt.Errorf("host %s kernel: %w", id, err)
			}
			return row{id, &kc}, nil
		})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*api.KernelCheckin, len(rows))
	for _, r := range rows {
		out[r.id] = r.kc
	}
	return out, nil
}
