package web

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
)

func withCookie(v string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "https://stent.test/ui/", nil)
	r.AddCookie(&http.Cookie{Name: CookieName, Value: v})
	return r
}

// TestSessionExpiry: a session ends at its TTL or its token's expiry,
// whichever comes first; unknown cookies are refused.
func TestSessionExpiry(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ss := newSessions(func() time.Time { return now }, nil)
	v, _, _ := ss.open(context.Background(), "sta_x", api.Principal{Role: api.RoleViewer}, time.Hour)
	short, _, _ := ss.open(context.Background(), "sta_y", api.Principal{Role: api.RoleAdmin, ExpiresAt: now.Add(10 * time.Minute)}, time.Hour)
	if _, err := ss.get(withCookie(v)); err != nil {
		t.Fatalf("get(fresh session) = %v", err)
	}
	if _, err := ss.get(withCookie(v + "x")); err != errBadSession {
		t.Errorf("get(altered cookie) = %v, want errBadSession", err)
	}
	r, _ := http.NewRequest(http.MethodGet, "https://stent.test/ui/", nil)
	if _, err := ss.get(r); err != errNoSession {
		t.Errorf("get(no cookie) = %v, want errNoSession", err)
	}
	now = now.Add(11 * time.Minute)
	if _, err := ss.get(withCookie(short)); err != errBadSession {
		t.Errorf("get(session past its token's expiry) = %v, want errBadSession", err)
	}
	if _, err := ss.get(withCookie(v)); err != nil {
		t.Errorf("get(session within its TTL) = %v", err)
	}
	now = now.Add(time.Hour)
	if _, err := ss.get(withCookie(v)); err != errBadSession {
		t.Errorf("get(session past its TTL) = %v, want errBadSession", err)
	}
}

// TestSessionCSRF: only the session's own token passes, from the header
// or the form.
func TestSessionCSRF(t *testing.T) {
	ss := newSessions(time.Now, nil)
	_, s, _ := ss.open(context.Background(), "sta_x", api.Principal{Role: api.RoleAdmin}, time.Hour)
	for _, tc := range []struct {
		header, form string
		want         bool
	}{
		{s.csrf, "", true},
		{"", s.csrf, true},
		{"", "", false},
		{"wrong", "", false},
		{"", s.csrf[:10], false},
	} {
		r, _ := http.NewRequest(http.MethodPost, "https://stent.test/ui/logout", nil)
		if tc.header != "" {
			r.Header.Set("X-CSRF-Token", tc.header)
		}
		r.Form = map[string][]string{}
		r.PostForm = map[string][]string{"csrf": {tc.form}}
		if got := s.checkCSRF(r); got != tc.want {
			t.Errorf("checkCSRF(header %q, form %q) = %v, want %v", tc.header, tc.form, got, tc.want)
		}
	}
}

// mapStore is a SessionStore in a map, for the unit test of sealing; the
// real one (stent-server's database, SQLite and PostgreSQL) is tested in
// package server.
type mapStore map[string]StoredSession

func (m mapStore) SaveSession(_ context.Context, s *StoredSession) error {
	m[s.ID] = *s
	return nil
}

func (m mapStore) LoadSession(_ context.Context, id string) (*StoredSession, error) {
	s, ok := m[id]
	if !ok {
		return nil, nil
	}
	return &s, nil
}

func (m mapStore) DeleteSession(_ context.Context, id string) error {
	delete(m, id)
	return nil
}

// TestStoredSessionSealed: what the store keeps names the session by the
// cookie's hash and holds neither the cookie nor the token in the clear;
// only the cookie opens it, and a sealed blob moved to another session's
// row opens nothing.
func TestStoredSessionSealed(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	db := mapStore{}
	ss := newSessions(func() time.Time { return now }, db)
	v, s, err := ss.open(ctx, "sta_secret-token", api.Principal{TokenID: "tok_1", Role: api.RoleOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := db[hashCookie(v)]
	if !ok || len(db) != 1 || st.TokenID != "tok_1" || !st.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("stored = %+v, want one session under the cookie's hash for tok_1", db)
	}
	if bytes.Contains(st.Sealed, []byte("sta_secret-token")) || bytes.Contains(st.Sealed, []byte(v)) || bytes.Contains(st.Sealed, []byte(s.csrf)) {
		t.Errorf("the stored session holds the token, the cookie or the CSRF token in the clear")
	}
	// A new process: the same store, nothing in memory.
	ss2 := newSessions(func() time.Time { return now }, db)
	got, err := ss2.get(withCookie(v))
	if err != nil || got.token != "sta_secret-token" || got.csrf != s.csrf || got.who.Role != api.RoleOperator {
		t.Fatalf("get after a restart = %+v, %v, want the session", got, err)
	}
	if _, err := ss2.get(withCookie(v + "x")); err != errBadSession {
		t.Errorf("get(altered cookie) = %v, want errBadSession", err)
	}
	// Another session's row with this one's sealed blob: the id is bound.
	v2, _, _ := ss.open(ctx, "sta_other", api.Principal{TokenID: "tok_2", Role: api.RoleViewer}, time.Hour)
	other := db[hashCookie(v2)]
	other.Sealed = st.Sealed
	db[other.ID] = other
	if _, err := ss2.get(withCookie(v2)); err != errBadSession {
		t.Errorf("get(another session's sealed blob) = %v, want errBadSession", err)
	}
	// Logging out deletes it from the store; expiry ends it.
	if err := ss2.drop(ctx, got); err != nil || len(db) != 1 {
		t.Errorf("drop: %v, %d stored, want 1 left", err, len(db))
	}
	if _, err := ss.get(withCookie(v)); err != errBadSession {
		t.Errorf("get(logged out) = %v, want errBadSession", err)
	}
	v3, _, _ := ss.open(ctx, "sta_z", api.Principal{TokenID: "tok_3"}, time.Hour)
	now = now.Add(time.Hour)
	if _, err := ss.get(withCookie(v3)); err != errBadSession {
		t.Errorf("get(expired) = %v, want errBadSession", err)
	}
}
