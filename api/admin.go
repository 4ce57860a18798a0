package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// The admin API, one Client method per endpoint stent-server's admin
// router serves (server's TestAdminRoutesHaveClientMethods keeps the two
// in step). Paths are built and escaped here only: the command line, the
// fleet simulator and the server's tests call these methods instead of
// assembling paths. Errors are *StatusError for answers other than 2xx.

// AuditQuery selects audit log entries; zero fields select everything.
type AuditQuery struct {
	Action string // only this action ("host.apply", "rollout.halt")
	Target string // only this target (host, rollout or token id)
	After  int64  // only entries with a larger id
	Limit  int    // at most this many (the server's default and cap apply)
	// Newest returns the newest entries first (a log's last page);
	// Before then pages back: only entries with a smaller id.
	Newest bool
	Before int64
}

// itemPath is base followed by segs, each path-escaped. An empty segment
// (an id nobody gave) is an error naming what, instead of a request for
// the collection itself.
func itemPath(what, base string, segs ...string) (string, error) {
	p := base
	for _, s := range segs {
		if s == "" {
			return "", fmt.Errorf("%s is empty", what)
		}
		p += "/" + url.PathEscape(s)
	}
	return p, nil
}

// call sends in with method to path and returns the decoded answer.
func call[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var out T
	if err := c.Do(ctx, method, path, in, &out); err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}

// callNone is call for answers without content (204, or nothing the
// caller needs).
func callNone(ctx context.Context, c *Client, method, what, base string, in any, segs ...string) error {
	p, err := itemPath(what, base, segs...)
	if err != nil {
		return err
	}
	return c.Do(ctx, method, p, in, nil)
}

// callItem is call at itemPath(what, base, segs...).
func callItem[T any](ctx context.Context, c *Client, method, what, base string, in any, segs ...string) (T, error) {
	p, err := itemPath(what, base, segs...)
	if err != nil {
		var zero T
		return zero, err
	}
	return call[T](ctx, c, method, p, in)
}

// Hosts lists the enrolled hosts (revoked ones too), without inventories.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	return call[[]Host](ctx, c, http.MethodGet, PathHosts, nil)
}

// Host returns one host with its latest inventory.
func (c *Client) Host(ctx context.Context, id string) (*Host, error) {
	return callItem[*Host](ctx, c, http.MethodGet, "host id", PathHosts, nil, id)
}

// RevokeHost revokes a host's credential: its agent is refused from then on.
func (c *Client) RevokeHost(ctx context.Context, id string) error {
	return callNone(ctx, c, http.MethodDelete, "host id", PathHosts, nil, id)
}

// HostLabelsRequest sets an enrolled host's labels: all of them (none:
// the host has no label), instead of the enrollment token's.
type HostLabelsRequest struct {
	Labels map[string]string `json:"labels"`
	Reason string            `json:"reason,omitempty"`
}

// SetHostLabels replaces a host's labels. What they select follows at
// once: maintenance windows, the live plan, running rollouts whose
// selector the host now matches.
func (c *Client) SetHostLabels(ctx context.Context, id string, req HostLabelsRequest) (*Host, error) {
	return callItem[*Host](ctx, c, http.MethodPut, "host id", PathHosts, req, id, "labels")
}

// PublishBundle uploads a signed bundle. Publishing a bundle the server
// has already is not an error: the answer describes the stored one.
func (c *Client) PublishBundle(ctx context.Context, data []byte) (*BundleInfo, error) {
	return call[*BundleInfo](ctx, c, http.MethodPost, PathAdminBundle, data)
}

// Bundles lists the published bundles, oldest first.
func (c *Client) Bundles(ctx context.Context) ([]BundleInfo, error) {
	return call[[]BundleInfo](ctx, c, http.MethodGet, PathAdminBundle, nil)
}

// CreateRollout starts a staged rollout of a published bundle.
func (c *Client) CreateRollout(ctx context.Context, req RolloutRequest) (*Rollout, error) {
	return call[*Rollout](ctx, c, http.MethodPost, PathRollouts, req)
}

// Rollouts lists the rollouts without their hosts.
func (c *Client) Rollouts(ctx context.Context) ([]Rollout, error) {
	return call[[]Rollout](ctx, c, http.MethodGet, PathRollouts, nil)
}

// Rollout returns one rollout, with each host's progress when withHosts
// (leave them out to poll a large rollout's counts cheaply).
func (c *Client) Rollout(ctx context.Context, id string, withHosts bool) (*Rollout, error) {
	p, err := itemPath("rollout id", PathRollouts, id)
	if err != nil {
		return nil, err
	}
	if !withHosts {
		p += "?hosts=0"
	}
	return call[*Rollout](ctx, c, http.MethodGet, p, nil)
}

// RolloutAction pauses, resumes or reverts a rollout: action is "pause",
// "resume" or "revert".
func (c *Client) RolloutAction(ctx context.Context, id, action string, req RolloutActionRequest) (*Rollout, error) {
	if action == "" {
		return nil, errors.New("rollout action is empty: want pause, resume or revert")
	}
	return callItem[*Rollout](ctx, c, http.MethodPost, "rollout id", PathRollouts, req, id, action)
}

// RevertPatch reverts a patch on the whole fleet: every rollout of it
// that is not reverted already turns into a revert, and comes back.
func (c *Client) RevertPatch(ctx context.Context, req RevertRequest) ([]Rollout, error) {
	return call[[]Rollout](ctx, c, http.MethodPost, PathRevert, req)
}

// Fleet returns the operator's overview of hosts and rollouts.
func (c *Client) Fleet(ctx context.Context) (*FleetStatus, error) {
	return call[*FleetStatus](ctx, c, http.MethodGet, PathFleet, nil)
}

// Audit returns the audit log entries q selects, oldest first (newest
// first with q.Newest).
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	v := url.Values{}
	if q.Action != "" {
		v.Set("action", q.Action)
	}
	if q.Target != "" {
		v.Set("target", q.Target)
	}
	if q.After != 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Newest {
		v.Set("order", "newest")
	}
	if q.Before != 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	p := PathAudit
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return call[[]AuditEntry](ctx, c, http.MethodGet, p, nil)
}

// CreateToken creates an admin token; the answer holds its secret, which
// the server does not keep.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*Token, error) {
	return call[*Token](ctx, c, http.MethodPost, PathTokens, req)
}

// Tokens lists the admin tokens, without secrets.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	return call[[]Token](ctx, c, http.MethodGet, PathTokens, nil)
}

// RevokeToken revokes an admin token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return callNone(ctx, c, http.MethodDelete, "token id", PathTokens, nil, id)
}

// CreateEnrollToken creates an enrollment token; the answer holds its
// secret, which the server does not keep.
func (c *Client) CreateEnrollToken(ctx context.Context, req EnrollTokenRequest) (*Token, error) {
	return call[*Token](ctx, c, http.MethodPost, PathEnrollToken, req)
}

// EnrollTokens lists the enrollment tokens, without secrets.
func (c *Client) EnrollTokens(ctx context.Context) ([]Token, error) {
	return call[[]Token](ctx, c, http.MethodGet, PathEnrollToken, nil)
}

// RevokeEnrollToken revokes an enrollment token.
func (c *Client) RevokeEnrollToken(ctx context.Context, id string) error {
	return callNone(ctx, c, http.MethodDelete, "enrollment token id", PathEnrollToken, nil, id)
}

// Settings returns the server's run-time settings.
func (c *Client) Settings(ctx context.Context) (*Settings, error) {
	return call[*Settings](ctx, c, http.MethodGet, PathSettings, nil)
}

// PutSettings changes the server's run-time settings and returns them.
func (c *Client) PutSettings(ctx context.Context, s Settings) (*Settings, error) {
	return call[*Settings](ctx, c, http.MethodPut, PathSettings, s)
}

// Windows lists the maintenance windows by name.
func (c *Client) Windows(ctx context.Context) ([]MaintenanceWindow, error) {
	return call[[]MaintenanceWindow](ctx, c, http.MethodGet, PathWindows, nil)
}

// PutWindow creates or replaces the maintenance window w.Name and returns
// it as stored.
func (c *Client) PutWindow(ctx context.Context, w MaintenanceWindow) (*MaintenanceWindow, error) {
	return callItem[*MaintenanceWindow](ctx, c, http.MethodPut, "window name", PathWindows, w, w.Name)
}

// DeleteWindow deletes a maintenance window.
func (c *Client) DeleteWindow(ctx context.Context, name string) error {
	return callNone(ctx, c, http.MethodDelete, "window name", PathWindows, nil, name)
}

// CreateKernelRollout starts a kernel rollout.
func (c *Client) CreateKernelRollout(ctx context.Context, req KernelRolloutRequest) (*KernelRollout, error) {
	return call[*KernelRollout](ctx, c, http.MethodPost, PathKernelRollouts, req)
}

// KernelRollouts lists the kernel rollouts without their hosts.
func (c *Client) KernelRollouts(ctx context.Context) ([]KernelRollout, error) {
	return call[[]KernelRollout](ctx, c, http.MethodGet, PathKernelRollouts, nil)
}

// KernelRollout returns one kernel rollout with each host's state.
func (c *Client) KernelRollout(ctx context.Context, id string) (*KernelRollout, error) {
	return callItem[*KernelRollout](ctx, c, http.MethodGet, "kernel rollout id", PathKernelRollouts, nil, id)
}

// KernelRolloutAction pauses, resumes or cancels a kernel rollout: action
// is "pause", "resume" or "cancel".
func (c *Client) KernelRolloutAction(ctx context.Context, id, action string, req RolloutActionRequest) (*KernelRollout, error) {
	if action == "" {
		return nil, errors.New("kernel rollout action is empty: want pause, resume or cancel")
	}
	return callItem[*KernelRollout](ctx, c, http.MethodPost, "kernel rollout id", PathKernelRollouts, req, id, action)
}

// Reboots returns the fleet's reboot status: who waits for which window
// and why, who holds a lease, who is blocked, who fell back.
func (c *Client) Reboots(ctx context.Context) (*RebootStatus, error) {
	return call[*RebootStatus](ctx, c, http.MethodGet, PathReboots, nil)
}

// SearchReboots returns the reboot status of the hosts q selects.
func (c *Client) SearchReboots(ctx context.Context, q RebootQuery) (*RebootStatus, error) {
	v := url.Values{}
	if q.Host != "" {
		v.Set("host", q.Host)
	}
	if q.Busy {
		v.Set("busy", "1")
	}
	p := PathReboots
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return call[*RebootStatus](ctx, c, http.MethodGet, p, nil)
}

// ApproveReboot approves the emergency reboot of one host (by id or
// hostname) outside its window.
func (c *Client) ApproveReboot(ctx context.Context, host string, req RebootApproval) error {
	return callNone(ctx, c, http.MethodPost, "host", PathReboots, req, host, "approve")
}
