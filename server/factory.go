package server

import (
	"errors"
	"net/http"
	"slices"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/vuln"
)

// The patch factory's state (docs/factory.md). Workers (stent factory run)
// put each upload they found and each per-kernel-build job as it moves on;
// the server keeps them, hands a building job to one worker at a time
// (a second worker's claim is refused with 409 until the first has not
// updated it for api.FactoryClaim), and audits every job state change,
// naming the key that signed the bundle.

func (s *Server) factoryRoutes() []route {
	return []route{
		{"GET " + api.PathFactory, api.RoleViewer, s.handleFactory},
		{"PUT " + api.PathFactoryUploads + "/{version}", api.RoleOperator, s.handlePutFactoryUpload},
		{"PUT " + api.PathFactoryJobs + "/{id}", api.RoleOperator, s.handlePutFactoryJob},
	}
}

func (s *Server) handleFactory(w http.ResponseWriter, r *http.Request) error {
	ups, err := s.st.ListFactoryUploads(r.Context())
	if err != nil {
		return internal(err)
	}
	jobs, err := s.st.ListFactoryJobs(r.Context())
	if err != nil {
		return internal(err)
	}
	out := &api.FactoryStatus{Uploads: []api.FactoryUpload{}, Jobs: []api.FactoryJob{}}
	for _, u := range ups {
		out.Uploads = append(out.Uploads, *u)
	}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, *j)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePutFactoryUpload(w http.ResponseWriter, r *http.Request) error {
	var u api.FactoryUpload
	if err := readJSON(r, 8<<20, &u); err != nil {
		return err
	}
	version := r.PathValue("version")
	if u.Version != version {
		return errorf(http.StatusBadRequest, "bad_request", "upload version %q in the body, %q in the path: they must be the same", u.Version, version)
	}
	for _, v := range []struct{ field, v string }{{"version", u.Version}, {"previous", u.Previous}} {
		if err := vuln.ValidateVersion(vuln.SchemeDeb, v.v); err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "upload %s: %s %q is not a Debian package version (6.1.192-3)", version, v.field, v.v)
		}
	}
	pr, now := principalOf(r), s.now().UTC()
	u.UpdatedAt, u.Worker = now, pr.actor()
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		old, err := tx.GetFactoryUpload(r.Context(), version)
		switch {
		case errors.Is(err, store.ErrNotFound):
			u.SeenAt = now
			var cves []string
			for _, f := range u.Fixes {
				cves = append(cves, f.CVEs...)
			}
			e := &api.AuditEntry{At: now, Actor: pr.actor(), Action: "factory.upload", Target: version, Detail: mustJSON(map[string]any{
				"previous": u.Previous, "fixes": len(u.Fixes), "cves": cves, "error": u.Error})}
			if err := tx.InsertAudit(r.Context(), e); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			u.SeenAt = old.SeenAt
		}
		return tx.PutFactoryUpload(r.Context(), &u)
	})
	if err != nil {
		return internal(err)
	}
	return writeJSON(w, http.StatusOK, u)
}

// errClaimed ends a job update another worker holds.
type errClaimed struct{ worker string }

func (e errClaimed) Error() string { return "claimed by " + e.worker }

func (s *Server) handlePutFactoryJob(w http.ResponseWriter, r *http.Request) error {
	var j api.FactoryJob
	if err := readJSON(r, 1<<20, &j); err != nil {
		return err
	}
	id := r.PathValue("id")
	switch {
	case j.ID != id:
		return errorf(http.StatusBadRequest, "bad_request", "job id %q in the body, %q in the path: they must be the same", j.ID, id)
	case j.Upload == "" || j.Kernel == "" || id != j.Upload+"/"+j.Kernel:
		return errorf(http.StatusBadRequest, "bad_request", "job %q: its id must be <upload>/<kernel release> (%s/%s)", id, j.Upload, j.Kernel)
	case !slices.Contains(api.JobStates, j.State):
		return errorf(http.StatusBadRequest, "bad_request", "job %s: state %q is not one of %v", id, j.State, api.JobStates)
	}
	pr, now := principalOf(r), s.now().UTC()
	j.UpdatedAt, j.Worker = now, pr.actor()
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if _, err := tx.GetFactoryUpload(r.Context(), j.Upload); err != nil {
			return err
		}
		old, err := tx.GetFactoryJob(r.Context(), id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			j.CreatedAt = now
			old = nil
		case err != nil:
			return err
		default:
			j.CreatedAt = old.CreatedAt
			if j.State == api.JobBuilding && old.State == api.JobBuilding && old.Worker != j.Worker && now.Sub(old.UpdatedAt) < api.FactoryClaim {
				return errClaimed{old.Worker}
			}
		}
		if old == nil || old.State != j.State || old.Bundle != j.Bundle {
			e := &api.AuditEntry{At: now, Actor: pr.actor(), Action: "factory.job", Target: id, Detail: mustJSON(map[string]any{
				"state": j.State, "bundle": j.Bundle, "name": j.Name, "level": j.Level, "key_id": j.KeyID,
				"cves": j.CVEs, "refused": len(j.Refused), "rollout": j.Rollout, "error": j.Error})}
			if err := tx.InsertAudit(r.Context(), e); err != nil {
				return err
			}
		}
		return tx.PutFactoryJob(r.Context(), &j)
	})
	var claimed errClaimed
	switch {
	case errors.As(err, &claimed):
		return errorf(http.StatusConflict, "conflict", "job %s is being built by %s (updated less than %v ago)", id, claimed.worker, api.FactoryClaim)
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusBadRequest, "bad_request", "job %s: no upload %s (put the upload first)", id, j.Upload)
	case err != nil:
		return internal(err)
	}
	return writeJSON(w, http.StatusOK, j)
}
