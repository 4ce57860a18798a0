package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The fleet's exposure over time: stent-server records a snapshot of the
// live plan's exposure when the plan changes, at most once per interval,
// and keeps them for a retention period.
const (
	PathExposure = "/v1/admin/plan/exposure" // GET ExposureHistory; ?since=RFC3339&limit=N
)

// ExposureLimit bounds the points of one answer (the newest are kept).
const ExposureLimit = 5000

// ExposurePoint is the fleet's exposure at one time.
type ExposurePoint struct {
	At time.Time `json:"at"`
	// Hosts is how many hosts were planned; Exposed how many of them had
	// at least one open CVE; Overdue how many were past a deadline.
	Hosts   int `json:"hosts"`
	Exposed int `json:"exposed"`
	Overdue int `json:"overdue"`
	// CVEs is how many CVEs were open on the fleet; Pairs the open (host,
	// CVE) pairs per severity level.
	CVEs  int            `json:"cves"`
	Pairs map[string]int `json:"pairs"`
}

// ExposureHistory is the recorded snapshots, oldest first.
type ExposureHistory struct {
	Interval  Duration        `json:"interval"`  // at most one snapshot per interval
	Retention Duration        `json:"retention"` // snapshots older than this are deleted
	Points    []ExposurePoint `json:"points"`
}

// ExposureHistory returns the snapshots taken since since (all when zero),
// at most limit of them (the newest; 0: ExposureLimit).
func (c *Client) ExposureHistory(ctx context.Context, since time.Time, limit int) (*ExposureHistory, error) {
	v := url.Values{}
	if !since.IsZero() {
		v.Set("since", since.UTC().Format(time.RFC3339))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	p := PathExposure
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return call[*ExposureHistory](ctx, c, http.MethodGet, p, nil)
}
