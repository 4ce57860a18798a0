package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// migrations are applied in order, each once, in its own transaction. They
// are written once for both engines: {{blob}} and {{serial}} are the only
// words spelled differently. Append; never edit a released migration.
var migrations = []string{
	// 1: initial schema. Times are Unix milliseconds, 0 for never.
	`CREATE TABLE hosts (
		id TEXT PRIMARY KEY,
		hostname TEXT NOT NULL,
		machine_id TEXT NOT NULL DEFAULT '',
		token_hash TEXT NOT NULL UNIQUE,
		channel TEXT NOT NULL,
		labels TEXT NOT NULL DEFAULT '{}',
		enrolled_at BIGINT NOT NULL,
		enrolled_by TEXT NOT NULL DEFAULT '',
		revoked_at BIGINT NOT NULL DEFAULT 0,
		last_seen BIGINT NOT NULL DEFAULT 0,
		kernel_release TEXT NOT NULL DEFAULT '',
		build_id TEXT NOT NULL DEFAULT '',
		boot_id TEXT NOT NULL DEFAULT '',
		agent_version TEXT NOT NULL DEFAULT '',
		health TEXT NOT NULL DEFAULT '',
		health_detail TEXT NOT NULL DEFAULT '',
		patches TEXT NOT NULL DEFAULT '[]',
		inventory TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE enroll_tokens (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		token_hash TEXT NOT NULL UNIQUE,
		channel TEXT NOT NULL,
		labels TEXT NOT NULL DEFAULT '{}',
		created_at BIGINT NOT NULL,
		created_by TEXT NOT NULL DEFAULT '',
		expires_at BIGINT NOT NULL,
		max_uses INTEGER NOT NULL DEFAULT 0,
		uses INTEGER NOT NULL DEFAULT 0,
		revoked_at BIGINT NOT NULL DEFAULT 0
	);
	CREATE TABLE admin_tokens (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		role TEXT NOT NULL,
		token_hash TEXT NOT NULL UNIQUE,
		created_at BIGINT NOT NULL,
		created_by TEXT NOT NULL DEFAULT '',
		expires_at BIGINT NOT NULL DEFAULT 0,
		revoked_at BIGINT NOT NULL DEFAULT 0
	);
	CREATE TABLE bundles (
		sha256 TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		kernel_release TEXT NOT NULL,
		build_id TEXT NOT NULL DEFAULT '',
		level BIGINT NOT NULL,
		replace_all INTEGER NOT NULL DEFAULT 0,
		cves TEXT NOT NULL DEFAULT '[]',
		size BIGINT NOT NULL,
		data {{blob}} NOT NULL,
		published_at BIGINT NOT NULL,
		published_by TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE rollouts (
		id TEXT PRIMARY KEY,
		seq BIGINT NOT NULL,
		bundle_sha256 TEXT NOT NULL REFERENCES bundles(sha256),
		name TEXT NOT NULL,
		kernel_release TEXT NOT NULL,
		level BIGINT NOT NULL,
		channel TEXT NOT NULL,
		selector TEXT NOT NULL DEFAULT '{}',
		canary INTEGER NOT NULL,
		waves TEXT NOT NULL,
		max_failure_pct DOUBLE PRECISION NOT NULL,
		offline_after_ms BIGINT NOT NULL,
		state TEXT NOT NULL,
		wave INTEGER NOT NULL,
		reason TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		created_by TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE rollout_hosts (
		rollout_id TEXT NOT NULL REFERENCES rollouts(id),
		host_id TEXT NOT NULL REFERENCES hosts(id),
		wave INTEGER NOT NULL,
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		applied_at BIGINT NOT NULL DEFAULT 0,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (rollout_id, host_id)
	);
	CREATE TABLE reports (
		host_id TEXT NOT NULL REFERENCES hosts(id),
		request_id TEXT NOT NULL,
		action TEXT NOT NULL,
		rollout_id TEXT NOT NULL DEFAULT '',
		name TEXT NOT NULL DEFAULT '',
		bundle_sha256 TEXT NOT NULL DEFAULT '',
		result TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		at BIGINT NOT NULL,
		received_at BIGINT NOT NULL,
		PRIMARY KEY (host_id, request_id)
	);
	CREATE TABLE audit (
		id {{serial}},
		at BIGINT NOT NULL,
		actor TEXT NOT NULL,
		action TEXT NOT NULL,
		target TEXT NOT NULL DEFAULT '',
		detail TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX audit_at ON audit (at);
	CREATE TABLE settings (
		key TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);`,
	// 2: the active server's epoch on PostgreSQL (see Store.Fence); one row.
	`CREATE TABLE leader (
		id INTEGER PRIMARY KEY,
		epoch BIGINT NOT NULL,
		holder TEXT NOT NULL DEFAULT '',
		since BIGINT NOT NULL DEFAULT 0
	);
	INSERT INTO leader (id, epoch) VALUES (1, 0)`,
	// 3: kernel updates and reboots (see reboots.go): maintenance windows,
	// kernel rollouts and their hosts, reboot leases, approvals, and each
	// host's last kernel check-in.
	`CREATE TABLE windows (
		name TEXT PRIMARY KEY,
		spec TEXT NOT NULL
	);
	CREATE TABLE kernel_rollouts (
		id TEXT PRIMARY KEY,
		seq BIGINT NOT NULL,
		spec TEXT NOT NULL,
		state TEXT NOT NULL,
		halt TEXT NOT NULL DEFAULT '',
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE kernel_hosts (
		rollout_id TEXT NOT NULL REFERENCES kernel_rollouts(id),
		host_id TEXT NOT NULL REFERENCES hosts(id),
		state TEXT NOT NULL,
		detail TEXT NOT NULL DEFAULT '',
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (rollout_id, host_id)
	);
	CREATE TABLE reboot_leases (
		id TEXT PRIMARY KEY,
		host_id TEXT NOT NULL UNIQUE REFERENCES hosts(id),
		grp TEXT NOT NULL,
		rollout_id TEXT NOT NULL DEFAULT '',
		boot_id TEXT NOT NULL DEFAULT '',
		granted_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL
	);
	CREATE INDEX reboot_leases_grp ON reboot_leases (grp, expires_at);
	CREATE TABLE reboot_approvals (
		host_id TEXT PRIMARY KEY REFERENCES hosts(id),
		approved_by TEXT NOT NULL,
		reason TEXT NOT NULL DEFAULT '',
		at BIGINT NOT NULL
	);
	ALTER TABLE hosts ADD COLUMN kernel TEXT NOT NULL DEFAULT ''`,
	// 4: per-host retention of reports and audit entries (see PruneHost).
	`CREATE INDEX reports_host_received ON reports (host_id, received_at);
	CREATE INDEX audit_actor ON audit (actor, id)`,
	// 5: the planning policy's versions (see policies.go) and the actions
	// the live plan proposed, each under its idempotency key.
	`CREATE TABLE policies (
		version INTEGER PRIMARY KEY,
		spec TEXT NOT NULL
	);
	CREATE TABLE plan_actions (
		id TEXT PRIMARY KEY,
		spec TEXT NOT NULL,
		state TEXT NOT NULL,
		updated_at BIGINT NOT NULL
	)`,
	// 6: a rollout to named hosts only (the live plan's actions).
	`ALTER TABLE rollouts ADD COLUMN only_hosts TEXT NOT NULL DEFAULT '[]'`,
	// 7: the patch factory's uploads and per-kernel-build jobs (see
	// factory.go), kept as JSON of their API form.
	`CREATE TABLE factory_uploads (
		version TEXT PRIMARY KEY,
		spec TEXT NOT NULL,
		seen_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE factory_jobs (
		id TEXT PRIMARY KEY,
		upload TEXT NOT NULL,
		kernel TEXT NOT NULL,
		state TEXT NOT NULL,
		worker TEXT NOT NULL DEFAULT '',
		spec TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX factory_jobs_upload ON factory_jobs (upload, kernel)`,
	// 8: the web dashboard's sessions (see sessions.go): by the hash of the
	// cookie, the admin token sealed under a key only the cookie gives.
	`CREATE TABLE ui_sessions (
		id TEXT PRIMARY KEY,
		token_id TEXT NOT NULL,
		sealed {{blob}} NOT NULL,
		principal TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL
	);
	CREATE INDEX ui_sessions_token ON ui_sessions (token_id);
	CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at)`,
	// 9: the fleet's exposure over time (see exposure.go): one small row
	// per snapshot of the live plan, kept for a retention period.
	`CREATE TABLE exposure_history (
		at BIGINT PRIMARY KEY,
		spec TEXT NOT NULL
	)`,
}

func (s *Store) dialect(q string) string {
	blob, serial := "BLOB", "INTEGER PRIMARY KEY"
	if s.engine == Postgres {
		blob, serial = "BYTEA", "BIGSERIAL PRIMARY KEY"
	}
	return strings.NewReplacer("{{blob}}", blob, "{{serial}}", serial).Replace(q)
}

// Migrate applies the migrations the database has not seen. On PostgreSQL
// an advisory lock keeps two servers starting at once from racing.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := s.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		err := s.Update(ctx, func(t *Tx) error {
			if s.engine == Postgres {
				if _, err := t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7352901)`); err != nil {
					return err
				}
			}
			var n int
			if err := t.queryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(s.dialect(m), ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := t.tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", firstLine(stmt), err)
				}
			}
			_, err := t.tx.ExecContext(ctx, s.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), version, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate to version %d: %w", version, err)
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
