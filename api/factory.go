package api

import (
	"context"
	"net/http"
	"time"
)

// The patch factory's state (docs/factory.md): each kernel upload the
// factory saw, the fixes it brings, and one job per kernel build the fleet
// runs, with where it stands and how long each step took. The factory
// workers (stent factory run) write it; stent factory status and the
// dashboard read it.
const (
	PathFactory        = "/v1/admin/factory"         // GET FactoryStatus
	PathFactoryUploads = "/v1/admin/factory/uploads" // PUT /<version> FactoryUpload -> FactoryUpload
	PathFactoryJobs    = "/v1/admin/factory/jobs"    // PUT /<id> FactoryJob -> FactoryJob (409 while another worker holds it)
)

// Factory job states, in the order a job goes through them.
const (
	JobBuilding    = "building"     // a worker builds the cumulative live patch
	JobRefused     = "refused"      // the builder refused every fix (reasons in Refused): the path is a reboot
	JobFailed      = "failed"       // the build or the smoke test failed (Error says why); nothing was published
	JobSmokeTested = "smoke-tested" // the bundle passed its QEMU smoke test
	JobPublished   = "published"    // the signed bundle is on the server
	JobRolledOut   = "rolled-out"   // a rollout of it to the canary channel started
)

// JobStates are the factory job states.
var JobStates = []string{JobBuilding, JobRefused, JobFailed, JobSmokeTested, JobPublished, JobRolledOut}

// FactoryClaim is how long a building job stays a worker's: another
// worker may take it over when it was not updated for this long.
const FactoryClaim = 30 * time.Minute

// FactoryStep is the time one step took.
type FactoryStep struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// FactoryFix is one fix an upload brings.
type FactoryFix struct {
	Index   int      `json:"index"`   // 1-based, in changelog order
	Upload  string   `json:"upload"`  // the package version whose changelog names it
	Summary string   `json:"summary"` // the changelog item
	CVEs    []string `json:"cves,omitempty"`
	Files   []string `json:"files"`
	Origin  string   `json:"origin"`           // source-diff or git
	Commit  string   `json:"commit,omitempty"` // the stable commit, for git
}

// FactoryUpload is one kernel upload the factory found.
type FactoryUpload struct {
	Version  string       `json:"version"`  // "6.1.192-3"
	Previous string       `json:"previous"` // the upload it was compared with
	Date     time.Time    `json:"date,omitzero"`
	Fixes    []FactoryFix `json:"fixes"`
	// Unattributed are files of the difference no changelog item claims;
	// Skipped the ones patch cannot apply (binary files, links).
	Unattributed []string      `json:"unattributed,omitempty"`
	Skipped      []string      `json:"skipped,omitempty"`
	Error        string        `json:"error,omitempty"` // why its fixes could not be found
	Steps        []FactoryStep `json:"steps,omitempty"`
	Worker       string        `json:"worker,omitempty"`
	SeenAt       time.Time     `json:"seen_at"` // set by the server on first PUT
	UpdatedAt    time.Time     `json:"updated_at"`
}

// FactoryRefusal is a fix the builder refused for one kernel build: for
// its CVEs the path is a reboot.
type FactoryRefusal struct {
	Fix    int      `json:"fix"`
	CVEs   []string `json:"cves,omitempty"`
	Reason string   `json:"reason"`
}

// FactoryJob is the cumulative live patch of one upload for one kernel
// build the fleet runs.
type FactoryJob struct {
	ID     string `json:"id"`     // "<upload>/<kernel release>"
	Upload string `json:"upload"` // the newest upload it brings the kernel up to
	Kernel string `json:"kernel"` // the kernel release: "6.1.0-56-amd64"
	Hosts  int    `json:"hosts"`  // hosts running it when the job started
	State  string `json:"state"`  // a JobStates value
	// Fixes are the indexes of the fixes the live patch carries, CVEs
	// theirs; Refused the fixes the builder refused, with its reason.
	Fixes   []int            `json:"fixes,omitempty"`
	CVEs    []string         `json:"cves,omitempty"`
	Refused []FactoryRefusal `json:"refused,omitempty"`
	// Cumulative is the bundle it replaces (--cumulative-with), Bundle the
	// new one's sha256, Name and Level its manifest's.
	Cumulative string `json:"cumulative,omitempty"`
	Bundle     string `json:"bundle,omitempty"`
	Name       string `json:"name,omitempty"`
	Level      int64  `json:"level,omitempty"`
	KeyID      string `json:"key_id,omitempty"` // the factory key that signed it
	Rollout    string `json:"rollout,omitempty"`
	// Waiting says why a published bundle is not rolled out yet (an
	// operator's approval, per the server's policy).
	Waiting   string        `json:"waiting,omitempty"`
	Error     string        `json:"error,omitempty"`
	Worker    string        `json:"worker,omitempty"`
	Steps     []FactoryStep `json:"steps,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
}

// FactoryStatus is every upload, newest first, and every job.
type FactoryStatus struct {
	Uploads []FactoryUpload `json:"uploads"`
	Jobs    []FactoryJob    `json:"jobs"`
}

// FactoryStatus returns the factory's uploads and jobs.
func (c *Client) FactoryStatus(ctx context.Context) (*FactoryStatus, error) {
	return call[*FactoryStatus](ctx, c, http.MethodGet, PathFactory, nil)
}

// PutFactoryUpload records an upload and its fixes (a worker's call).
func (c *Client) PutFactoryUpload(ctx context.Context, u FactoryUpload) (*FactoryUpload, error) {
	return callItem[*FactoryUpload](ctx, c, http.MethodPut, "upload version", PathFactoryUploads, u, u.Version)
}

// PutFactoryJob records a job's state (a worker's call). Putting a job in
// JobBuilding claims it: the server answers 409 while another worker
// holds it (updated within FactoryClaim).
func (c *Client) PutFactoryJob(ctx context.Context, j FactoryJob) (*FactoryJob, error) {
	return callItem[*FactoryJob](ctx, c, http.MethodPut, "job id", PathFactoryJobs, j, j.ID)
}
