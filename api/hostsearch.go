package api

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"
)

// The calls a page-by-page client (the web dashboard) needs besides the
// rest of the admin API: who a token is, and one bounded page of hosts.
const (
	PathWhoami     = "/v1/admin/whoami"       // GET Principal: the calling token
	PathHostSearch = "/v1/admin/hosts/search" // GET HostPage; ?q=&label=k=v&kernel=&state=&offset=&limit=
)

// Host states HostQuery.State selects.
const (
	HostStateOnline   = "online"
	HostStateOffline  = "offline" // enrolled, not revoked, silent
	HostStateRevoked  = "revoked"
	HostStateHealthy  = "healthy"
	HostStateDegraded = "degraded"
)

// HostStates are the values HostQuery.State takes.
var HostStates = []string{HostStateOnline, HostStateOffline, HostStateRevoked, HostStateHealthy, HostStateDegraded}

// MaxHostPage is the most hosts one HostPage holds.
const MaxHostPage = 500

// Principal is the admin token that made a request.
type Principal struct {
	TokenID   string    `json:"token_id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// HostQuery selects a page of hosts; zero fields select everything.
type HostQuery struct {
	Query  string            // a substring of the hostname or the host id
	Labels map[string]string // every label must match
	Kernel string            // running kernel release, exactly
	State  string            // one of HostStates
	Offset int               // hosts to skip, in hostname order
	Limit  int               // page size: default 50, at most MaxHostPage
}

// HostPage is one page of the hosts a HostQuery selects, in hostname
// order, without inventories.
type HostPage struct {
	Hosts  []Host `json:"hosts"`
	Total  int    `json:"total"` // hosts the query selects
	Offset int    `json:"offset"`
	Limit  int    `json:"limit"`
}

// Values returns q as the query of a PathHostSearch request.
func (q HostQuery) Values() url.Values {
	v := url.Values{}
	if q.Query != "" {
		v.Set("q", q.Query)
	}
	keys := make([]string, 0, len(q.Labels))
	for k := range q.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.Add("label", k+"="+q.Labels[k])
	}
	if q.Kernel != "" {
		v.Set("kernel", q.Kernel)
	}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Offset != 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Whoami describes the client's own token: its id, name and role.
func (c *Client) Whoami(ctx context.Context) (*Principal, error) {
	return call[*Principal](ctx, c, http.MethodGet, PathWhoami, nil)
}

// SearchHosts returns one page of the hosts q selects.
func (c *Client) SearchHosts(ctx context.Context, q HostQuery) (*HostPage, error) {
	p := PathHostSearch
	if v := q.Values(); len(v) > 0 {
		p += "?" + v.Encode()
	}
	return call[*HostPage](ctx, c, http.MethodGet, p, nil)
}
