package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// TestUISessions: a dashboard session is read back as stored, not once
// expired; logging out deletes it; past the bound the oldest go; revoking
// its token ends it.
func TestUISessions(t *testing.T) {
	forEngines(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		tok := &store.AdminToken{ID: "tok1", Name: "ops", Role: api.RoleOperator, Hash: "h1", CreatedAt: t0}
		other := &store.AdminToken{ID: "tok2", Name: "viewer", Role: api.RoleViewer, Hash: "h2", CreatedAt: t0}
		put := func(id, token string, created time.Time, max int) {
			t.Helper()
			u := &store.UISession{ID: id, TokenID: token, Sealed: []byte{0, 1, 2, 255}, Principal: `{"token_id":"` + token + `"}`,
				CreatedAt: created, ExpiresAt: created.Add(8 * time.Hour)}
			if err := s.Update(ctx, func(tx *store.Tx) error { return tx.PutUISession(ctx, u, created, max) }); err != nil {
				t.Fatalf("PutUISession(%s): %v", id, err)
			}
		}
		if err := s.Update(ctx, func(tx *store.Tx) error {
			return errors.Join(tx.InsertAdminToken(ctx, tok), tx.InsertAdminToken(ctx, other))
		}); err != nil {
			t.Fatal(err)
		}
		put("s1", "tok1", t0, 10)
		got, err := s.UISession(ctx, "s1", t0.Add(time.Hour))
		want := &store.UISession{ID: "s1", TokenID: "tok1", Sealed: []byte{0, 1, 2, 255}, Principal: `{"token_id":"tok1"}`, CreatedAt: t0, ExpiresAt: t0.Add(8 * time.Hour)}
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("UISession(s1) differs (-want +got):\n%s", d)
		}
		if _, err := s.UISession(ctx, "s1", t0.Add(8*time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UISession(s1) once expired = %v, want ErrNotFound", err)
		}
		if _, err := s.UISession(ctx, "nosuch", t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UISession(nosuch) = %v, want ErrNotFound", err)
		}
		// Logging out.
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.DeleteUISession(ctx, "s1") }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UISession(ctx, "s1", t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UISession(s1) after logout = %v, want ErrNotFound", err)
		}
		// At most 3: the fourth login drops the oldest.
		for i := range 4 {
			put(fmt.Sprintf("b%d", i), "tok2", t0.Add(time.Duration(i)*time.Minute), 3)
		}
		for i, live := range []bool{false, true, true, true} {
			_, err := s.UISession(ctx, fmt.Sprintf("b%d", i), t0.Add(time.Hour))
			if live != (err == nil) {
				t.Errorf("after 4 logins with a bound of 3: UISession(b%d) = %v, want live %v", i, err, live)
			}
		}
		// Revoking tok2 ends its sessions, not tok1's.
		put("s2", "tok1", t0.Add(time.Hour), 10)
		if err := s.Update(ctx, func(tx *store.Tx) error { return tx.RevokeAdminToken(ctx, "tok2", t0.Add(time.Hour)) }); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"b1", "b2", "b3"} {
			if _, err := s.UISession(ctx, id, t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("UISession(%s) of a revoked token = %v, want ErrNotFound", id, err)
			}
		}
		if _, err := s.UISession(ctx, "s2", t0.Add(time.Hour)); err != nil {
			t.Errorf("UISession(s2) of another token after the revocation = %v, want it live", err)
		}
	})
}
