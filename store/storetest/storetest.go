// Package storetest opens real databases for tests: SQLite in a temporary
// folder, and PostgreSQL from scripts/setup-postgres.sh (or
// $STENT_TEST_PG_DSN), each test in a fresh database of its own.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
	"github.com/stent-dev/stent/store"
)

// Engines lists the engines every store-backed test runs against.
var Engines = []string{store.SQLite, store.Postgres}

var (
	pgOnce sync.Once
	pgDSN  string
	pgWhy  string
)

// PostgresDSN returns the DSN of the test cluster's database, setting it up
// on first use. It skips the test when that cannot be done here (not root),
// and fails it when it should have worked: under CI=true, or when the set-up
// script itself fails.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		if v := os.Getenv("STENT_TEST_PG_DSN"); v != "" {
			pgDSN = v
			return
		}
		if os.Geteuid() != 0 {
			pgWhy = "PostgreSQL tests need root to run scripts/setup-postgres.sh (or set STENT_TEST_PG_DSN)"
			return
		}
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "setup-postgres.sh")
		out, err := exec.Command(script).Output()
		if err != nil {
			msg := err.Error()
			if ee, ok := err.(*exec.ExitError); ok {
				msg += ": " + string(ee.Stderr)
			}
			pgWhy = "fail:" + script + ": " + msg
			return
		}
		pgDSN = strings.TrimSpace(string(out))
	})
	if pgDSN != "" {
		return pgDSN
	}
	if strings.HasPrefix(pgWhy, "fail:") {
		t.Fatal(strings.TrimPrefix(pgWhy, "fail:"))
	}
	testenv.Unavailable(t, "%s", pgWhy)
	return ""
}

// DSN returns a DSN for a new, empty database of the engine, removed when
// the test ends.
func DSN(t testing.TB, engine string) string {
	t.Helper()
	if engine == store.SQLite {
		return filepath.Join(t.TempDir(), "stent.db")
	}
	base := PostgresDSN(t)
	var b [6]byte
	rand.Read(b[:])
	name := "stent_t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Open opens a new, empty store of the engine, closed when the test ends.
func Open(t testing.TB, engine string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), DSN(t, engine))
	if err != nil {
		t.Fatalf("open %s store: %v", engine, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
