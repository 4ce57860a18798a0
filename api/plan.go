package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// The live plan: stent-server plans every host that sent an inventory with
// the planner of stent plan (package policy), over the feeds it keeps and
// the policy uploaded to it, and keeps the plan current as inventories,
// feeds, published bundles, maintenance windows and the policy change.
const (
	PathPlan = "/v1/admin/plan" // GET PlanPage; ?label=k=v (repeatable), ?host=ID or hostname, ?after=ID&limit=N
	// PathPlanReport is GET PlanReport: the compliance report of the
	// selected hosts; ?label=, ?host= as PathPlan, ?days=N of history.
	PathPlanReport = "/v1/admin/plan/report"
	// MaxReportDays bounds ?days= of PathPlanReport.
	MaxReportDays = 3650
)

// Plan pages: at most MaxPlanLimit hosts per answer, PlanLimit by default.
const (
	PlanLimit    = 100
	MaxPlanLimit = 1000
)

// PlanQuery selects hosts of the live plan; zero fields select every host,
// a page at a time.
type PlanQuery struct {
	Selector map[string]string // only hosts with all these labels
	Host     string            // only this host: its id, or its hostname as enrolled or as its inventory says
	After    string            // only hosts with a larger id: PlanPage.Next of the previous page
	Limit    int               // at most this many hosts (default PlanLimit, at most MaxPlanLimit)
}

// PlanPage is one page of the live plan: how the plan stands, the fleet's
// standing per rule over every selected host (not only this page's), and
// this page's hosts in host id order.
type PlanPage struct {
	// GeneratedAt is the time of the oldest plan of a selected host (the
	// server's clock when it planned): the plan is at least as recent.
	GeneratedAt time.Time `json:"generated_at,omitzero"`
	// FeedGeneration is the generation of the feeds' database the plan
	// used (GET PathFeeds); PolicyVersion the version of the policy (0:
	// the built-in default, no policy was uploaded).
	FeedGeneration uint64 `json:"feed_generation"`
	PolicyVersion  int    `json:"policy_version"`
	// Error says why there is no plan yet (no feed makes a database yet);
	// the hosts then come without plans.
	Error  string          `json:"error,omitempty"`
	Policy *policy.Policy  `json:"policy,omitempty"`
	Feeds  []vuln.FeedInfo `json:"feeds"`
	// Fleet counts the selected hosts per rule and status; each rule's
	// breached_hosts names at most MaxBreachedNames of them.
	Fleet []policy.FleetRule `json:"fleet"`
	// Hosts is how many hosts the selection holds (every page), Groups in
	// how many kernel situations, Failed how many of them could not be
	// planned (their Error says why).
	Hosts  int `json:"hosts"`
	Groups int `json:"groups"`
	Failed int `json:"failed"`
	// Page is this page's hosts; Next, when set, is the After of the next
	// page.
	Page []PlanHost `json:"page"`
	Next string     `json:"next,omitempty"`
}

// MaxBreachedNames bounds PlanPage.Fleet[].breached_hosts: the counts are
// whole, the names are read from the hosts' plans.
const MaxBreachedNames = 100

// PlanHost is one host of the live plan.
type PlanHost struct {
	HostID string            `json:"host_id"`
	Labels map[string]string `json:"labels,omitempty"`
	// Group identifies the host's kernel situation: hosts of one group
	// share an evaluation.
	Group       string    `json:"group"`
	EvaluatedAt time.Time `json:"evaluated_at,omitzero"`
	// Error says why the host has no plan: its inventory cannot be judged
	// (unknown distribution, unparsable version), or there is no feed
	// database yet.
	Error string           `json:"error,omitempty"`
	Plan  *policy.HostPlan `json:"plan,omitempty"`
}

// selection is the query string of the hosts q selects: its labels (in
// order) and host.
func (q PlanQuery) selection() url.Values {
	v := url.Values{}
	kvs := make([]string, 0, len(q.Selector))
	for k, val := range q.Selector {
		kvs = append(kvs, k+"="+val)
	}
	sort.Strings(kvs)
	for _, l := range kvs {
		v.Add("label", l)
	}
	if q.Host != "" {
		v.Set("host", q.Host)
	}
	return v
}

// Plan returns one page of the live plan.
func (c *Client) Plan(ctx context.Context, q PlanQuery) (*PlanPage, error) {
	v := q.selection()
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	p := PathPlan
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return call[*PlanPage](ctx, c, http.MethodGet, p, nil)
}

// The planning policy on the server: versioned, each upload a new version,
// the old ones kept.
const (
	PathPolicy = "/v1/admin/policy" // GET PolicyStatus (?version=N: that version as current); PUT PolicyUpload -> PolicyVersion
)

// PolicyUpload is a policy file (the JSON of docs/policy.md) to put in
// force.
type PolicyUpload struct {
	File   string `json:"file"`   // its name, for errors and the record
	Source string `json:"source"` // its content
	Reason string `json:"reason,omitempty"`
}

// PolicyVersion is one version of the policy. Version 0 is the built-in
// default, in force until a policy is uploaded.
type PolicyVersion struct {
	Version   int            `json:"version"`
	File      string         `json:"file,omitempty"`
	SHA256    string         `json:"sha256,omitempty"` // of Source
	CreatedAt time.Time      `json:"created_at,omitzero"`
	CreatedBy string         `json:"created_by,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	Source    string         `json:"source,omitempty"`
	Policy    *policy.Policy `json:"policy,omitempty"`
}

// PolicyStatus is the policy in force (or the version asked for) and the
// list of every version, newest first, without their content.
type PolicyStatus struct {
	Current  PolicyVersion   `json:"current"`
	Versions []PolicyVersion `json:"versions"`
}

// Policy returns the policy in force, or version when above 0, and the
// list of versions.
func (c *Client) Policy(ctx context.Context, version int) (*PolicyStatus, error) {
	p := PathPolicy
	if version > 0 {
		p += "?version=" + strconv.Itoa(version)
	}
	return call[*PolicyStatus](ctx, c, http.MethodGet, p, nil)
}

// PutPolicy uploads a policy file as the new version in force. A policy
// that does not parse is refused (400: file, line, column and field) and
// changes nothing.
func (c *Client) PutPolicy(ctx context.Context, up PolicyUpload) (*PolicyVersion, error) {
	return call[*PolicyVersion](ctx, c, http.MethodPut, PathPolicy, up)
}

// WholePlan is the selected hosts of the live plan, read page by page, as
// the plan stent plan would have made of their inventories.
type WholePlan struct {
	Plan           *policy.FleetPlan
	PolicyVersion  int
	FeedGeneration uint64
	// Unplanned are the selected hosts without a plan, with why.
	Unplanned []PlanHost
}

// FleetPlan reads the hosts q selects of the live plan, MaxPlanLimit a
// page (q.After and q.Limit are ignored), into one policy.FleetPlan:
// hosts by hostname, the fleet's standing summed over them. It is what
// stent fleet plan and stent fleet report render, and the dashboard's
// printable report. A server without a plan, or a selection of which no
// host has one, is an error.
func (c *Client) FleetPlan(ctx context.Context, q PlanQuery) (*WholePlan, error) {
	q.After, q.Limit = "", MaxPlanLimit
	out := &WholePlan{}
	var fp *policy.FleetPlan
	for {
		page, err := c.Plan(ctx, q)
		if err != nil {
			return nil, err
		}
		if page == nil {
			return nil, fmt.Errorf("GET %s: an empty answer", PathPlan)
		}
		if page.Error != "" {
			return nil, fmt.Errorf("the server has no plan: %s", Escape(page.Error))
		}
		if fp == nil {
			fp = &policy.FleetPlan{Format: policy.PlanFormat, SchemaVersion: policy.PlanSchemaVersion, GeneratedAt: page.GeneratedAt,
				Policy: page.Policy, Feeds: page.Feeds, Hosts: []policy.HostPlan{}}
			out.PolicyVersion, out.FeedGeneration = page.PolicyVersion, page.FeedGeneration
		}
		if page.GeneratedAt.Before(fp.GeneratedAt) {
			fp.GeneratedAt = page.GeneratedAt
		}
		for _, h := range page.Page {
			if h.Plan == nil {
				out.Unplanned = append(out.Unplanned, h)
				continue
			}
			fp.Hosts = append(fp.Hosts, *h.Plan)
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if fp.Policy == nil {
		fp.Policy = policy.Default()
	}
	sort.SliceStable(fp.Hosts, func(i, j int) bool { return fp.Hosts[i].Hostname < fp.Hosts[j].Hostname })
	fp.Fleet = policy.Summarize(fp.Policy, fp.Hosts)
	if len(fp.Hosts) == 0 && len(out.Unplanned) > 0 {
		return nil, fmt.Errorf("none of the %d selected host(s) has a plan: %s", len(out.Unplanned), Escape(out.Unplanned[0].Error))
	}
	out.Plan = fp
	return out, nil
}

// PlanReport is the compliance report of the selected hosts of the live
// plan, made by the server (GET PathPlanReport): each host's section and
// the fleet's standing, not the hosts' plans.
type PlanReport struct {
	FeedGeneration uint64 `json:"feed_generation"`
	PolicyVersion  int    `json:"policy_version"`
	// Error says why there is no plan yet (no feed makes a database);
	// Report is then nil.
	Error  string         `json:"error,omitempty"`
	Report *policy.Report `json:"report,omitempty"`
	// Unplanned are the selected hosts without a plan, with why.
	Unplanned []PlanHost `json:"unplanned"`
}

// FleetReport returns the report that policy.BuildReport makes of
// FleetPlan's plan of the hosts q selects (q.After and q.Limit are
// ignored), with days of history (0 to MaxReportDays; fewer than 0 is 0:
// none), made by the server
// from its plan: the answer carries each host's section of the report,
// a few KB, not its plan (its whole exposure, hundreds of KB), so a report
// of 10,000 hosts is tens of MB. Its errors are FleetPlan's.
func (c *Client) FleetReport(ctx context.Context, q PlanQuery, days int) (*PlanReport, error) {
	v := q.selection()
	v.Set("days", strconv.Itoa(max(days, 0)))
	out, err := call[*PlanReport](ctx, c, http.MethodGet, PathPlanReport+"?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	switch {
	case out == nil:
		return nil, fmt.Errorf("GET %s: an empty answer", PathPlanReport)
	case out.Error != "":
		return nil, fmt.Errorf("the server has no plan: %s", Escape(out.Error))
	case out.Report == nil:
		return nil, fmt.Errorf("GET %s: an answer without a report", PathPlanReport)
	case len(out.Report.Hosts) == 0 && len(out.Unplanned) > 0:
		return nil, fmt.Errorf("none of the %d selected host(s) has a plan: %s", len(out.Unplanned), Escape(out.Unplanned[0].Error))
	}
	return out, nil
}
