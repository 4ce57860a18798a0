package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/store"
)

// Token prefixes say what a secret is when it turns up in a log or a paste.
const (
	prefixHost   = "sth_"
	prefixAdmin  = "sta_"
	prefixEnroll = "ste_"
)

func newSecret(prefix string) string {
	var b [32]byte
	rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func newID(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// hashToken is how secrets are stored and looked up. The secrets are 256
// random bits, so a fast hash is enough.
func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

var roleRank = map[string]int{api.RoleViewer: 1, api.RoleOperator: 2, api.RoleAdmin: 3}

// need values of handle besides the roles.
const (
	needNone   = ""
	needHost   = "host"
	needReader = "reader" // a host or any admin token (bundle downloads)
)

type ctxKey int

const principalKey ctxKey = 0

// principal is who made a request: a host or an admin token.
type principal struct {
	host  *host
	admin *store.AdminToken
}

func (p *principal) actor() string {
	switch {
	case p == nil:
		return "anonymous"
	case p.host != nil:
		return "host:" + p.host.ID
	default:
		return fmt.Sprintf("token:%s (%s)", p.admin.ID, p.admin.Name)
	}
}

func principalOf(r *http.Request) *principal {
	p, _ := r.Context().Value(principalKey).(*principal)
	return p
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if v, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return ""
}

var errUnauthorized = &httpError{status: http.StatusUnauthorized, code: "unauthorized", msg: "missing, unknown, expired or revoked credential"}

// authorize checks the request's credential against need and returns the
// request with its principal attached.
func (s *Server) authorize(r *http.Request, need string) (*http.Request, error) {
	if need == needNone {
		return r, nil
	}
	tok := bearer(r)
	if tok == "" {
		return r, errUnauthorized
	}
	p := &principal{}
	switch {
	case strings.HasPrefix(tok, prefixHost):
		s.mu.RLock()
		h := s.byToken[hashToken(tok)]
		revoked := h == nil || !h.RevokedAt.IsZero()
		s.mu.RUnlock()
		// An unknown or revoked credential is no credential (401) on
		// every route; a valid one is forbidden the admin API (403).
		if revoked {
			return r, errUnauthorized
		}
		if need != needHost && need != needReader {
			return r, errorf(http.StatusForbidden, "forbidden", "host credentials cannot call the admin API")
		}
		p.host = h
	case strings.HasPrefix(tok, prefixAdmin):
		a, err := s.admins.lookup(r.Context(), s.st, hashToken(tok))
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return r, errUnauthorized
			}
			return r, internal(err)
		}
		now := s.now()
		if !a.RevokedAt.IsZero() || (!a.ExpiresAt.IsZero() && now.After(a.ExpiresAt)) {
			return r, errUnauthorized
		}
		if need == needHost {
			return r, errorf(http.StatusForbidden, "forbidden", "admin tokens cannot call the agent API")
		}
		if need != needReader && roleRank[a.Role] < roleRank[need] {
			return r, errorf(http.StatusForbidden, "forbidden", "token %s has role %s; this needs %s", a.ID, a.Role, need)
		}
		p.admin = a
	default:
		return r, errUnauthorized
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey, p)), nil
}

// adminCache keeps admin tokens looked up in the last few seconds, so that
// tokens created or revoked by another process (stent-server token) take
// effect soon without a query per request.
type adminCache struct {
	mu sync.Mutex
	m  map[string]adminEntry
}

type adminEntry struct {
	tok *store.AdminToken
	at  time.Time
}

const adminCacheTTL = 10 * time.Second

func (c *adminCache) lookup(ctx context.Context, st *store.Store, hash string) (*store.AdminToken, error) {
	c.mu.Lock()
	e, ok := c.m[hash]
	c.mu.Unlock()
	if ok && time.Since(e.at) < adminCacheTTL {
		if e.tok == nil {
			return nil, store.ErrNotFound
		}
		return e.tok, nil
	}
	tok, err := st.AdminTokenByHash(ctx, hash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]adminEntry{}
	}
	if len(c.m) > 10000 {
		clear(c.m) // unknown tokens from a scanner must not grow this forever
	}
	c.m[hash] = adminEntry{tok: tok, at: time.Now()}
	c.mu.Unlock()
	if tok == nil {
		return nil, store.ErrNotFound
	}
	return tok, nil
}

func (c *adminCache) forget() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// CreateAdminToken stores a new admin token and returns its secret. It is
// what the bootstrap and `stent-server token create` use.
func CreateAdminToken(ctx context.Context, st *store.Store, name, role string, ttl time.Duration, by string) (*api.Token, error) {
	if roleRank[role] == 0 {
		return nil, fmt.Errorf("role %q: want viewer, operator or admin", role)
	}
	if ttl < 0 {
		return nil, fmt.Errorf("ttl %v: must not be negative (0 for a token that does not expire)", ttl)
	}
	now := time.Now().UTC()
	secret := newSecret(prefixAdmin)
	a := &store.AdminToken{ID: newID("tok_"), Name: name, Role: role, Hash: hashToken(secret), CreatedAt: now, CreatedBy: by}
	if ttl > 0 {
		a.ExpiresAt = now.Add(ttl)
	}
	detail, _ := json.Marshal(map[string]any{"name": name, "role": role, "expires_at": a.ExpiresAt})
	err := st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.InsertAdminToken(ctx, a); err != nil {
			return err
		}
		return tx.InsertAudit(ctx, &api.AuditEntry{At: now, Actor: by, Action: "token.create", Target: a.ID, Detail: detail})
	})
	if err != nil {
		return nil, err
	}
	return &api.Token{ID: a.ID, Name: name, Role: role, CreatedAt: now, ExpiresAt: a.ExpiresAt, Secret: secret}, nil
}

// bootstrapAdmin creates the first admin token when there is none.
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	toks, err := s.st.ListAdminTokens(ctx)
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		return nil
	}
	t, err := CreateAdminToken(ctx, s.st, "bootstrap", api.RoleAdmin, 0, "server")
	if err != nil {
		return fmt.Errorf("bootstrap admin token: %w", err)
	}
	if err := atomicfile.Write(s.BootstrapTokenFile(), []byte(t.Secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("bootstrap admin token: %w", err)
	}
	s.log.Info("created the first admin token", "file", s.BootstrapTokenFile())
	return nil
}

// handleEnroll exchanges an enrollment token for a host credential.
func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) error {
	var req api.EnrollRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	if !strings.HasPrefix(req.Token, prefixEnroll) {
		return errUnauthorized
	}
	if err := api.CheckHostname(req.Hostname); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "enroll: %v", err)
	}
	if err := api.CheckMachineID(req.MachineID); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "enroll: %v", err)
	}
	for k, v := range req.Labels {
		if !api.ValidLabel(k, v) {
			return errorf(http.StatusBadRequest, "bad_request", "label %s=%s: want letters, digits and ._-/", k, v)
		}
	}
	if len(req.Replaces) > 128 {
		return errorf(http.StatusBadRequest, "bad_request", "replaces: want the old host credential (sth_...)")
	}
	// Checked before queueing: a bogus token costs one read, not a write
	// in someone else's batch.
	et, err := s.st.EnrollTokenByHash(r.Context(), hashToken(req.Token))
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthorized
	}
	if err != nil {
		return storeError(err)
	}
	now := s.now().UTC()
	if !et.Usable(now) {
		return errUnauthorized
	}
	// Labels are the token's, which the operator set: a host does not get
	// to move itself into another group, wave or selector. It may repeat
	// them (an agent started with --label checks it got the right token).
	for k, v := range req.Labels {
		if et.Labels[k] != v {
			return errorf(http.StatusBadRequest, "bad_request", "label %s=%s: labels come from the enrollment token, which does not set it; ask the operator for a token with this label", k, v)
		}
	}
	// Replacing an enrolled host needs its credential: machine IDs and
	// hostnames are no secret, and anyone holding the same (multi-use)
	// token could otherwise revoke a host and take its name. Without it,
	// an operator revokes the old host first (stent fleet revoke-host).
	var old *host
	s.mu.RLock()
	if req.Replaces != "" {
		old = s.byToken[hashToken(req.Replaces)]
		if old == nil {
			s.mu.RUnlock()
			return errorf(http.StatusUnauthorized, "unauthorized", "replaces: the old host credential is unknown or revoked")
		}
	}
	for _, o := range s.hosts {
		if o == old || !o.RevokedAt.IsZero() {
			continue
		}
		if req.MachineID != "" && o.MachineID == req.MachineID {
			s.mu.RUnlock()
			return errorf(http.StatusConflict, "conflict", "machine_id: host %s (%s) is enrolled with this machine ID; enroll with its credential (stent agent --replace) or have an operator revoke %s first", o.ID, api.Escape(o.Hostname), o.ID)
		}
		if o.Hostname == req.Hostname {
			s.mu.RUnlock()
			return errorf(http.StatusConflict, "conflict", "hostname %s: taken by host %s; enroll with its credential (stent agent --replace) or have an operator revoke %s first", api.Escape(req.Hostname), o.ID, o.ID)
		}
	}
	s.mu.RUnlock()
	secret := newSecret(prefixHost)
	h := &store.Host{ID: newID("h_"), Hostname: req.Hostname, MachineID: req.MachineID, TokenHash: hashToken(secret), EnrolledAt: now,
		Channel: et.Channel, EnrolledBy: et.ID, Labels: map[string]string{}}
	for k, v := range et.Labels {
		h.Labels[k] = v
	}
	var replaced []string
	if old != nil {
		replaced = []string{old.ID}
	}
	detail, _ := json.Marshal(map[string]any{"hostname": h.Hostname, "channel": h.Channel, "labels": h.Labels, "enroll_token": et.ID, "replaces": replaced})
	err = s.w.do(r.Context(), func(tx *store.Tx) error {
		if _, err := tx.UseEnrollToken(r.Context(), et.Hash, now); err != nil {
			return err
		}
		if err := tx.InsertHost(r.Context(), h); err != nil {
			return err
		}
		for _, id := range replaced {
			if err := tx.RevokeHost(r.Context(), id, now); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return tx.InsertAudit(r.Context(), &api.AuditEntry{At: now, Actor: "enroll_token:" + et.ID, Action: "host.enroll", Target: h.ID, Detail: detail})
	})
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthorized // used up or revoked meanwhile
	}
	if err != nil {
		return storeError(err)
	}
	s.mu.Lock()
	s.addHost(h)
	for _, id := range replaced {
		s.revokeHostLocked(id, now)
	}
	s.mu.Unlock()
	for _, id := range replaced {
		s.lp.removeHost(id) // revoked: it leaves the plan
	}
	s.log.Info("host enrolled", "host", h.ID, "hostname", h.Hostname, "channel", h.Channel, "replaces", replaced)
	return writeJSON(w, http.StatusCreated, api.EnrollResponse{HostID: h.ID, Credential: secret, Channel: h.Channel, Labels: h.Labels})
}

// audit appends an admin action to the audit log through the writer.
func (s *Server) audit(ctx context.Context, p *principal, action, target string, detail any) error {
	var raw json.RawMessage
	if detail != nil {
		raw, _ = json.Marshal(detail)
	}
	e := &api.AuditEntry{At: s.now().UTC(), Actor: p.actor(), Action: action, Target: target, Detail: raw}
	return s.w.do(ctx, func(tx *store.Tx) error { return tx.InsertAudit(ctx, e) })
}
