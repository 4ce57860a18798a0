package web

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stent-dev/stent/api"
)

// CookieName is the session cookie. Its value is 256 random bits; the
// server keeps only their hash, beside the token it stands for.
const CookieName = "stent_session"

// MaxSessions bounds the sessions kept: logging in past it drops the
// oldest, so a script logging in forever cannot fill memory or the store.
const MaxSessions = 10000

var errBadSession = errors.New("the session is unknown or has expired: log in again")
var errNoSession = errors.New("no session cookie")

// session is one logged-in browser.
type session struct {
	hash    string // sha256 of the cookie value
	token   string // the admin API token it was opened with
	who     api.Principal
	csrf    string
	created time.Time
	expires time.Time
}

// canOperate reports whether the session's role may change rollouts (the
// API decides; this only hides buttons it would refuse).
func (s *session) canOperate() bool {
	return s.who.Role == api.RoleOperator || s.who.Role == api.RoleAdmin
}

// checkCSRF reports whether r carries the session's CSRF token, in the
// X-CSRF-Token header (htmx) or the csrf form field (plain forms).
func (s *session) checkCSRF(r *http.Request) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// SessionStore keeps the dashboard's sessions where a restart, or a
// standby taking over, finds them (stent-server's database). It sees the
// hash of the cookie and the session sealed under a key derived from the
// cookie, never the cookie or the token.
type SessionStore interface {
	SaveSession(ctx context.Context, s *StoredSession) error
	// LoadSession returns the live session with the id, or nil, nil.
	LoadSession(ctx context.Context, id string) (*StoredSession, error)
	DeleteSession(ctx context.Context, id string) error
}

// StoredSession is a session as a SessionStore keeps it.
type StoredSession struct {
	ID        string // hex sha256 of the cookie's value
	TokenID   string
	Sealed    []byte // the admin token and the CSRF token, AES-256-GCM
	Principal api.Principal
	CreatedAt time.Time
	ExpiresAt time.Time
}

// sessions are the logged-in browsers: in db when there is one, else in
// memory (a restart logs everybody out).
type sessions struct {
	now func() time.Time
	db  SessionStore
	mu  sync.Mutex
	m   map[string]*session // without db
	// flash is the one-shot message of each session's next page: kept in
	// memory only (a restart loses at most a "done" message).
	flash map[string]string
}

func newSessions(now func() time.Time, db SessionStore) *sessions {
	return &sessions{now: now, db: db, m: map[string]*session{}, flash: map[string]string{}}
}

func randomString() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashCookie(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// sessionAEAD is the cipher that seals a stored session: its key is
// derived from the cookie's value (HKDF-SHA256), which only the browser
// has.
func sessionAEAD(cookie string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(cookie), nil, "stent dashboard session v1", 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal encrypts the session's secrets for the store, bound to its id.
func seal(cookie string, s *session) ([]byte, error) {
	aead, err := sessionAEAD(cookie)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(s.token+"\n"+s.csrf), []byte(s.hash)), nil
}

// unseal opens a stored session with the cookie's value.
func unseal(cookie string, st *StoredSession) (*session, error) {
	aead, err := sessionAEAD(cookie)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(st.Sealed) < n {
		return nil, errBadSession
	}
	plain, err := aead.Open(nil, st.Sealed[:n], st.Sealed[n:], []byte(st.ID))
	if err != nil {
		return nil, errBadSession
	}
	token, csrf, ok := strings.Cut(string(plain), "\n")
	if !ok {
		return nil, errBadSession
	}
	return &session{hash: st.ID, token: token, who: st.Principal, csrf: csrf, created: st.CreatedAt, expires: st.ExpiresAt}, nil
}

// open starts a session for token, whose principal is who, and returns the
// cookie value.
func (ss *sessions) open(ctx context.Context, token string, who api.Principal, ttl time.Duration) (string, *session, error) {
	now := ss.now()
	value := randomString()
	s := &session{hash: hashCookie(value), token: token, who: who, csrf: randomString(), created: now, expires: now.Add(ttl)}
	if !who.ExpiresAt.IsZero() && who.ExpiresAt.Before(s.expires) {
		s.expires = who.ExpiresAt
	}
	if ss.db != nil {
		sealed, err := seal(value, s)
		if err != nil {
			return "", nil, err
		}
		st := &StoredSession{ID: s.hash, TokenID: who.TokenID, Sealed: sealed, Principal: who, CreatedAt: now, ExpiresAt: s.expires}
		if err := ss.db.SaveSession(ctx, st); err != nil {
			return "", nil, fmt.Errorf("store the session: %w", err)
		}
		return value, s, nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, o := range ss.m {
		if !now.Before(o.expires) {
			delete(ss.m, k)
		}
	}
	for len(ss.m) >= MaxSessions {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(ss.m, oldest.hash)
	}
	ss.m[s.hash] = s
	return value, s, nil
}

// get returns r's session: errNoSession without a cookie, errBadSession
// for a cookie that names no live session (forged, logged out, expired,
// its token revoked).
func (ss *sessions) get(r *http.Request) (*session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, errNoSession
	}
	value := strings.TrimSpace(c.Value)
	h := hashCookie(value)
	if ss.db != nil {
		st, err := ss.db.LoadSession(r.Context(), h)
		if err != nil {
			return nil, err
		}
		if st == nil || !ss.now().Before(st.ExpiresAt) {
			return nil, errBadSession
		}
		return unseal(value, st)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[h]
	if s == nil {
		return nil, errBadSession
	}
	if !ss.now().Before(s.expires) {
		delete(ss.m, h)
		return nil, errBadSession
	}
	return s, nil
}

// drop ends a session.
func (ss *sessions) drop(ctx context.Context, s *session) error {
	ss.mu.Lock()
	delete(ss.m, s.hash)
	delete(ss.flash, s.hash)
	ss.mu.Unlock()
	if ss.db != nil {
		return ss.db.DeleteSession(ctx, s.hash)
	}
	return nil
}

// setFlash keeps msg for s's next page.
func (ss *sessions) setFlash(s *session, msg string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.flash) >= MaxSessions {
		clear(ss.flash)
	}
	ss.flash[s.hash] = msg
}

// takeFlash returns s's message once.
func (ss *sessions) takeFlash(s *session) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	msg := ss.flash[s.hash]
	delete(ss.flash, s.hash)
	return msg
}

// setCookie sets the session cookie for life (Max-Age, not Expires: the
// browser's clock need not agree with the server's).
func setCookie(w http.ResponseWriter, value string, life time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: value, Path: Prefix, MaxAge: max(int(life.Seconds()), 1),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// maxTokenLen bounds the token field of the login form.
const maxTokenLen = 256

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request, c *call) error {
	if _, err := h.sess.get(r); err == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return nil
	}
	msg := ""
	if r.URL.Query().Get("expired") != "" {
		msg = "Your session is unknown or has expired: log in again."
	}
	h.render(w, http.StatusOK, "login", c, "Log in", msg, nil)
	return nil
}

// login exchanges an admin token for a session: the API says whether the
// token is valid and what role it has.
func (h *Handler) login(w http.ResponseWriter, r *http.Request, c *call) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || len(tok) > maxTokenLen {
		h.render(w, http.StatusBadRequest, "login", c, "Log in", "Paste an admin token (sta_..., from stent-server token create or the server's admin.token file).", nil)
		return nil
	}
	who, err := h.client(tok).Whoami(r.Context())
	if err != nil {
		if api.IsStatus(err, http.StatusUnauthorized) || api.IsStatus(err, http.StatusForbidden) {
			h.render(w, http.StatusUnauthorized, "login", c, "Log in", "That token is not an admin token the server knows, or it has expired or been revoked.", nil)
			return nil
		}
		return err
	}
	value, s, err := h.sess.open(r.Context(), tok, *who, h.cfg.SessionTTL)
	if err != nil {
		return err
	}
	setCookie(w, value, s.expires.Sub(h.cfg.Now()))
	h.cfg.Log.Info("dashboard login", "token", who.TokenID, "name", who.Name, "role", who.Role)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
	return nil
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := h.sess.drop(r.Context(), c.s); err != nil {
		return err
	}
	clearCookie(w)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	return nil
}
