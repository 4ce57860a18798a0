package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The fleet's open CVEs, read from the live plan: which hosts are exposed
// to each, how each host gets its fix, and by when.
const (
	PathPlanCVEs = "/v1/admin/plan/cves"  // GET CVEPage; ?q=&severity=&fix=&offset=&limit=
	PathPlanCVE  = "/v1/admin/plan/cves/" // + CVE id: GET CVEDetail; ?offset=&limit=
)

// CVE pages: at most MaxCVELimit rows (CVEs or hosts) per answer,
// CVELimit by default.
const (
	CVELimit    = 50
	MaxCVELimit = 500
)

// Fix paths: how a host exposed to a CVE gets its fix.
const (
	FixLivePatch = "live-patch"        // a published live patch fixes it: apply it, no reboot
	FixPatched   = "live-patched"      // an applied live patch fixes it; the kernel update is still due
	FixReboot    = "reboot"            // an installed kernel carries the fix: reboot into it
	FixUpdate    = "update-and-reboot" // a released kernel package carries the fix: install it, reboot
	FixNone      = "no-fix"            // no released fix (or no feed speaks for the kernel)
)

// FixPaths are the fix paths, best first.
var FixPaths = []string{FixLivePatch, FixPatched, FixReboot, FixUpdate, FixNone}

// CVEQuery selects open CVEs; zero fields select them all, a page at a
// time.
type CVEQuery struct {
	Query    string // part of the CVE id, case-insensitive
	Severity string // only this severity level: critical, high, medium, low, none, unknown
	Fix      string // only CVEs with at least one host on this fix path (FixPaths)
	Offset   int
	Limit    int // default CVELimit, at most MaxCVELimit
}

// CVESummary is one CVE open on the fleet.
type CVESummary struct {
	CVE      string   `json:"cve"`
	Severity string   `json:"severity"`        // level name
	Score    *float64 `json:"score,omitempty"` // CVSS base score, when scored
	// Hosts is how many hosts are exposed; Paths how many of them are on
	// each fix path; Overdue how many are past a deadline for it.
	Hosts   int            `json:"hosts"`
	Paths   map[string]int `json:"paths"`
	Overdue int            `json:"overdue"`
	// Deadline is the nearest deadline of a host for this CVE (overdue
	// ones included), nil when no rule sets one.
	Deadline *time.Time `json:"deadline,omitempty"`
}

// CVEPage is one page of the fleet's open CVEs, most severe first (then
// by CVSS score, hosts exposed and id).
type CVEPage struct {
	// GeneratedAt is when the index was made from the live plan; Error
	// says why there is no plan yet.
	GeneratedAt time.Time `json:"generated_at,omitzero"`
	Error       string    `json:"error,omitempty"`
	// Total is how many CVEs match the query; Open how many are open on
	// the fleet in all; Hosts how many planned hosts are exposed to at
	// least one, Overdue how many of them are past a deadline for one.
	Total   int          `json:"total"`
	Open    int          `json:"open"`
	Hosts   int          `json:"hosts"`
	Overdue int          `json:"overdue"`
	Offset  int          `json:"offset"`
	Limit   int          `json:"limit"`
	CVEs    []CVESummary `json:"cves"`
}

// CVEHost is one host exposed to a CVE.
type CVEHost struct {
	HostID   string `json:"host_id"`
	Hostname string `json:"hostname"`
	Group    string `json:"group"` // the kernel situation (PlanHost.Group)
	Kernel   string `json:"kernel"`
	State    string `json:"state"` // the finding's state (vuln.State)
	Fix      string `json:"fix"`   // fix path
	// Remedy names the fix: the live patch, the installed kernel or the
	// package version that carries it.
	Remedy   string     `json:"remedy,omitempty"`
	Deadline *time.Time `json:"deadline,omitempty"` // the nearest of the host's rules
	Status   string     `json:"status,omitempty"`   // the worst compliance status of its items
	Overdue  bool       `json:"overdue,omitempty"`
}

// CVEDetail is one CVE: its summary, and a page of the hosts exposed,
// overdue first, then by deadline and hostname.
type CVEDetail struct {
	CVESummary
	GeneratedAt time.Time  `json:"generated_at,omitzero"`
	Published   *time.Time `json:"published,omitempty"`
	FixReleased *time.Time `json:"fix_released,omitempty"` // the earliest fix release any host's finding names
	Offset      int        `json:"offset"`
	Limit       int        `json:"limit"`
	Page        []CVEHost  `json:"page"`
}

// PlanCVEs returns a page of the fleet's open CVEs.
func (c *Client) PlanCVEs(ctx context.Context, q CVEQuery) (*CVEPage, error) {
	v := url.Values{}
	if q.Query != "" {
		v.Set("q", q.Query)
	}
	if q.Severity != "" {
		v.Set("severity", q.Severity)
	}
	if q.Fix != "" {
		v.Set("fix", q.Fix)
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	p := PathPlanCVEs
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return call[*CVEPage](ctx, c, http.MethodGet, p, nil)
}

// PlanCVE returns one open CVE and a page of the hosts exposed to it; a
// CVE no planned host is exposed to is a 404.
func (c *Client) PlanCVE(ctx context.Context, id string, offset, limit int) (*CVEDetail, error) {
	v := url.Values{}
	if offset > 0 {
		v.Set("offset", strconv.Itoa(offset))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	p := PathPlanCVE + url.PathEscape(id)
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return call[*CVEDetail](ctx, c, http.MethodGet, p, nil)
}
