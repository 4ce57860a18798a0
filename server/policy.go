package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/store"
)

// The planning policy lives on the server, versioned: each upload is a new
// version (the old ones stay in the store), with an audit entry; the live
// plan is made again under the new one at once. A policy that does not
// parse is refused with its file, line, column and field and changes
// nothing.

// maxPolicySize bounds an uploaded policy file.
const maxPolicySize = 1 << 20

// loadPolicy puts the newest stored policy in force.
func (s *Server) loadPolicy(ctx context.Context) error {
	vs, err := s.st.ListPolicies(ctx)
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return nil
	}
	v := vs[len(vs)-1]
	p, err := policy.Parse(v.File, strings.NewReader(v.Source))
	if err != nil {
		// It parsed when it was uploaded: a newer server reads it
		// differently. Plan with the default and say so.
		s.log.Warn("stored policy no longer parses; planning with the default policy", "version", v.Version, "err", err)
		return nil
	}
	s.lp.setPolicy(p, v.Version)
	return nil
}

func (s *Server) policyRoutes() []route {
	return []route{
		{"GET " + api.PathPolicy, api.RoleViewer, s.handlePolicy},
		{"PUT " + api.PathPolicy, api.RoleAdmin, s.handlePutPolicy},
	}
}

func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request) error {
	want := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "bad_request", "version %q: want a version number", v)
		}
		want = n
	}
	vs, err := s.st.ListPolicies(r.Context())
	if err != nil {
		return internal(err)
	}
	s.lp.mu.RLock()
	cur := s.lp.polVersion
	s.lp.mu.RUnlock()
	if want == 0 {
		want = cur
	}
	out := &api.PolicyStatus{Versions: []api.PolicyVersion{}, Current: api.PolicyVersion{Policy: policy.Default()}}
	found := want == 0
	for i := len(vs) - 1; i >= 0; i-- {
		v := *vs[i]
		if v.Version == want {
			out.Current, found = v, true
			if p, err := policy.Parse(v.File, strings.NewReader(v.Source)); err == nil {
				out.Current.Policy = p
			}
		}
		v.Source, v.Policy = "", nil
		out.Versions = append(out.Versions, v)
	}
	if !found {
		return errorf(http.StatusNotFound, "not_found", "no policy version %d", want)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request) error {
	var up api.PolicyUpload
	if err := readJSON(r, 2*maxPolicySize, &up); err != nil {
		return err
	}
	if up.File == "" {
		up.File = "upload"
	}
	if len(up.Source) > maxPolicySize {
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "policy %s: %d bytes, at most %d", up.File, len(up.Source), maxPolicySize)
	}
	p, err := policy.Parse(up.File, strings.NewReader(up.Source))
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_policy", "%v; the policy in force is unchanged", err)
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	vs, err := s.st.ListPolicies(r.Context())
	if err != nil {
		return internal(err)
	}
	pr, now := principalOf(r), s.now().UTC()
	sum := sha256.Sum256([]byte(up.Source))
	v := &api.PolicyVersion{Version: 1, File: up.File, SHA256: hex.EncodeToString(sum[:]), CreatedAt: now, CreatedBy: pr.actor(), Reason: up.Reason, Source: up.Source}
	if len(vs) > 0 {
		v.Version = vs[len(vs)-1].Version + 1
	}
	var rules []string
	for _, rl := range p.Rules {
		rules = append(rules, rl.ID)
	}
	e := &api.AuditEntry{At: now, Actor: pr.actor(), Action: "policy.set", Target: "v" + strconv.Itoa(v.Version), Detail: mustJSON(map[string]any{
		"version": v.Version, "file": v.File, "sha256": v.SHA256, "presets": p.Presets, "rules": rules,
		"windows": len(p.Windows), "exceptions": len(p.Exceptions), "unattended": p.Unattended, "reason": up.Reason})}
	err = s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.InsertPolicy(r.Context(), v); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if err != nil {
		return internal(err)
	}
	s.lp.setPolicy(p, v.Version)
	s.lp.replanAll()
	s.log.Info("policy set", "version", v.Version, "file", v.File, "by", pr.actor())
	v.Policy = p
	return writeJSON(w, http.StatusOK, v)
}
