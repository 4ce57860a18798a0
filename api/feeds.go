package api

import (
	"context"
	"net/http"
	"time"
)

// Paths of the feeds stent-server keeps for planning.
const (
	PathFeeds        = "/v1/admin/feeds"         // GET FeedsStatus
	PathFeedsRefresh = "/v1/admin/feeds/refresh" // POST: refresh every feed now -> FeedsStatus
)

// FeedsStatus is how the vulnerability feeds that stent-server keeps
// stand: the database they make, and each feed.
type FeedsStatus struct {
	// Generation counts the databases the feeds made; 0: none yet. It
	// grows whenever the content of a feed in use changes.
	Generation uint64    `json:"generation"`
	BuiltAt    time.Time `json:"built_at,omitzero"`
	// Error says why the feeds in use make no database now (for example
	// none says which kernels fix which CVE); the previous one, if any,
	// stays in use.
	Error    string       `json:"error,omitempty"`
	Interval Duration     `json:"interval"` // how often the feeds are refreshed
	Feeds    []FeedStatus `json:"feeds"`
}

// FeedStatus is one feed: the copy in use and the last refresh.
type FeedStatus struct {
	Kind     string `json:"kind"` // debian-changelog, cna, osv, nvd, livepatch
	Location string `json:"location"`
	// Automatic is set for the feed the server makes itself: the
	// manifests of its published bundles.
	Automatic bool `json:"automatic,omitempty"`
	// InUse is set when a good copy is in use: the last one that loaded,
	// whatever the refreshes since then did.
	InUse     bool       `json:"in_use"`
	Records   int        `json:"records"`
	Skipped   int        `json:"skipped,omitempty"`
	Warnings  []string   `json:"warnings,omitempty"`
	Newest    string     `json:"newest,omitempty"`     // a changelog's newest upload
	FetchedAt *time.Time `json:"fetched_at,omitempty"` // when the copy in use was downloaded
	Digest    string     `json:"digest,omitempty"`     // sha256 of the content in use

	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastChange  time.Time `json:"last_change,omitzero"` // when the content in use last changed
	// Error says why the last refresh failed, the copy in use staying the
	// last good one; empty when it succeeded.
	Error    string `json:"error,omitempty"`
	Failures int    `json:"failures,omitempty"` // refreshes failed in a row
}

// Feeds returns how the server's vulnerability feeds stand.
func (c *Client) Feeds(ctx context.Context) (*FeedsStatus, error) {
	return call[*FeedsStatus](ctx, c, http.MethodGet, PathFeeds, nil)
}

// RefreshFeeds makes the server refresh every feed now, and returns how
// they stand afterwards.
func (c *Client) RefreshFeeds(ctx context.Context) (*FeedsStatus, error) {
	return call[*FeedsStatus](ctx, c, http.MethodPost, PathFeedsRefresh, nil)
}
