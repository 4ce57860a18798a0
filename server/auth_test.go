package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
)

func (e *env) client(token string) *api.Client {
	return &api.Client{BaseURL: e.url, Token: token, HTTP: e.admin.HTTP}
}

func (e *env) enroll(token, hostname string) (*agent.Credentials, error) {
	return agent.Enroll(context.Background(), e.admin.HTTP, e.url, api.TLSOptions{Fingerprint: e.fp}, token, hostname, "", nil)
}

// errOf is the error of a call's results, for tests that look at the
// status only.
func errOf[T any](_ T, err error) error { return err }

func status(err error) int {
	if err == nil {
		return 200
	}
	var se *api.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return -1
}

func TestEnrollmentTokens(t *testing.T) {
	e := startEnv(t, envOpt{})
	ctx := context.Background()
	twice := e.enrollToken("stable", 2)
	for i, want := range []bool{true, true, false} {
		_, err := e.enroll(twice, fmt.Sprintf("h%d", i))
		if (err == nil) != want {
			t.Errorf("enrollment #%d with a 2-use token: err = %v, want success %v", i, err, want)
		}
	}
	short, err := e.admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "short", TTL: api.Duration(300 * time.Millisecond)})
	e.ok(err)
	time.Sleep(400 * time.Millisecond)
	if _, err := e.enroll(short.Secret, "h"); err == nil {
		t.Errorf("enrollment with an expired token succeeded")
	}
	rev, err := e.admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "rev"})
	e.ok(err)
	e.ok(e.admin.RevokeEnrollToken(ctx, rev.ID))
	if _, err := e.enroll(rev.Secret, "h"); err == nil {
		t.Errorf("enrollment with a revoked token succeeded")
	}
	if _, err := e.enroll("ste_made_up", "h"); err == nil {
		t.Errorf("enrollment with an unknown token succeeded")
	}
	// Labels and channel come from the token (TestEnrollLabelsFromToken).
	lt, err := e.admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "l", Channel: "canary", Labels: map[string]string{"dc": "fra"}})
	e.ok(err)
	c, err := agent.Enroll(ctx, e.admin.HTTP, e.url, api.TLSOptions{Fingerprint: e.fp}, lt.Secret, "web-9", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Channel != "canary" || c.Labels["dc"] != "fra" || len(c.Labels) != 1 {
		t.Errorf("enrolled host channel %q labels %v, want canary with dc=fra", c.Channel, c.Labels)
	}
}

func TestCredentials(t *testing.T) {
	e := startEnv(t, envOpt{})
	ctx := context.Background()
	tok := e.enrollToken("stable", 0)
	a, err := e.enroll(tok, "a")
	if err != nil {
		t.Fatal(err)
	}
	hostA := e.client(a.Credential)
	sync := func(c *api.Client) error {
		return c.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Health: api.HealthOK}, &api.SyncResponse{})
	}
	tv, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "v", Role: api.RoleViewer})
	e.ok(err)
	to, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "o", Role: api.RoleOperator})
	e.ok(err)
	expiring, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "x", Role: api.RoleAdmin, TTL: api.Duration(300 * time.Millisecond)})
	e.ok(err)
	viewer, operator := e.client(tv.Secret), e.client(to.Secret)

	tests := []struct {
		name   string
		call   func() error
		status int
	}{
		{"host syncs", func() error { return sync(hostA) }, 200},
		{"no credential", func() error { return sync(e.client("")) }, 401},
		{"unknown host credential", func() error { return sync(e.client("sth_bogus")) }, 401},
		{"garbage credential", func() error { return sync(e.client("hello")) }, 401},
		{"host on admin API", func() error { return errOf(hostA.Hosts(ctx)) }, 403},
		{"admin token on agent API", func() error { return sync(e.admin) }, 403},
		{"viewer reads fleet", func() error { return errOf(viewer.Fleet(ctx)) }, 200},
		{"viewer cannot roll out", func() error {
			return errOf(viewer.CreateRollout(ctx, api.RolloutRequest{Bundle: "x"}))
		}, 403},
		{"viewer cannot create enrollment tokens", func() error {
			return errOf(viewer.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "n"}))
		}, 403},
		{"operator creates enrollment tokens", func() error {
			return errOf(operator.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "n"}))
		}, 200},
		{"operator cannot create admin tokens", func() error {
			return errOf(operator.CreateToken(ctx, api.TokenRequest{Name: "n", Role: api.RoleAdmin}))
		}, 403},
		{"operator cannot revoke hosts", func() error { return operator.RevokeHost(ctx, a.HostID) }, 403},
		{"admin token with a negative ttl", func() error {
			return errOf(e.admin.CreateToken(ctx, api.TokenRequest{Name: "neg", Role: api.RoleViewer, TTL: api.Duration(-time.Hour)}))
		}, 400},
		{"enrollment token with a negative ttl", func() error {
			return errOf(e.admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "neg", TTL: api.Duration(-time.Hour)}))
		}, 400},
		{"unknown host credential on admin API", func() error { return errOf(e.client("sth_bogus").Hosts(ctx)) }, 401},
		{"expired admin token", func() error {
			time.Sleep(400 * time.Millisecond)
			return errOf(e.client(expiring.Secret).Fleet(ctx))
		}, 401},
	}
	for _, tt := range tests {
		if got := status(tt.call()); got != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.status)
		}
	}

	// Revocation takes effect at once, for hosts and admin tokens.
	e.ok(e.admin.RevokeHost(ctx, a.HostID))
	if got := status(sync(hostA)); got != 401 {
		t.Errorf("sync after host revocation: status %d, want 401", got)
	}
	if got := status(errOf(hostA.Hosts(ctx))); got != 401 {
		t.Errorf("admin API with a revoked host credential: status %d, want 401", got)
	}
	e.ok(e.admin.RevokeToken(ctx, tv.ID))
	if got := status(errOf(viewer.Fleet(ctx))); got != 401 {
		t.Errorf("viewer after revocation: status %d, want 401", got)
	}
	audit := e.audit(api.AuditQuery{Action: "host.revoke"})
	if len(audit) != 1 || audit[0].Target != a.HostID {
		t.Errorf("audit host.revoke = %+v, want one entry for %s", audit, a.HostID)
	}
}

// TestHostIsolation: a host's calls only ever touch its own rows, whatever
// it puts in the body.
func TestHostIsolation(t *testing.T) {
	e := startEnv(t, envOpt{})
	ctx := context.Background()
	f := e.fleet(3, "stable", nil)
	e.waitHosts(3)
	// A fourth host in another channel, outside the rollout.
	other, err := e.enroll(e.enrollToken("canary", 0), "outsider")
	if err != nil {
		t.Fatal(err)
	}
	outsider := e.client(other.Credential)
	if err := outsider.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Health: api.HealthOK}, &api.SyncResponse{}); err != nil {
		t.Fatal(err)
	}
	for _, h := range f.Hosts {
		h.Runtime.SetApplyDelay(time.Hour) // stay "released" so a forged report would show
	}
	b := e.publish("lp_iso", 1, true, 512)
	r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Canary: 3})
	// The outsider claims to have failed in that rollout.
	var resp api.ReportResponse
	err = outsider.Do(ctx, http.MethodPost, api.PathReport, api.Report{RequestID: "forged", Action: api.ActionApply, Rollout: r.ID,
		Name: "lp_iso", Result: api.ResultFailed, Error: "forged", At: time.Now()}, &resp)
	if got := status(err); got != http.StatusNotFound {
		t.Fatalf("report about a rollout the host is not in: status %d (%v), want 404", got, err)
	}
	r = e.rollout(r.ID)
	if r.Counts.Failed != 0 || r.State != api.RolloutRunning {
		t.Errorf("after a forged report from a host outside the rollout: counts %+v state %s, want nothing failed", r.Counts, r.State)
	}
	// Its desired state is its own: nothing.
	var sr api.SyncResponse
	if err := outsider.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel}, &sr); err != nil {
		t.Fatal(err)
	}
	if len(sr.Desired.Patches) != 0 {
		t.Errorf("outsider's desired state = %+v, want empty", sr.Desired)
	}
	// A bundle is readable by the hosts told to apply it, not by other
	// hosts (TestBundleDownloadScope) nor by strangers.
	if got := status(download(outsider, api.PathBundles+b.SHA256)); got != 404 {
		t.Errorf("host outside the rollout downloading its bundle: status %d, want 404", got)
	}
	if got := status(download(e.client(""), api.PathBundles+b.SHA256)); got != 401 {
		t.Errorf("anonymous bundle download: status %d, want 401", got)
	}
}

// TestBundleDownloadScope: a host downloads only the bundles its desired
// state names, with Range resume, and gets the 404 of a bundle that does
// not exist for any other; admin tokens read every bundle.
func TestBundleDownloadScope(t *testing.T) {
	e := startEnv(t, envOpt{})
	ctx := context.Background()
	sync := func(c *api.Client) api.DesiredState {
		t.Helper()
		var sr api.SyncResponse
		if err := c.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Health: api.HealthOK}, &sr); err != nil {
			t.Fatal(err)
		}
		return sr.Desired
	}
	hosts := map[string]*api.Client{}
	for _, ch := range []string{"stable", "other"} {
		cr, err := e.enroll(e.enrollToken(ch, 0), "host-"+ch)
		if err != nil {
			t.Fatal(err)
		}
		hosts[ch] = e.client(cr.Credential)
		sync(hosts[ch])
	}
	in, out := hosts["stable"], hosts["other"]
	b := e.publish("lp_scope", 1, true, 4096)
	unused := e.publish("lp_unused", 1, true, 512)
	const missing = "0000000000000000000000000000000000000000000000000000000000000000"

	// Published, in no rollout yet: no host may fetch it.
	if got := status(download(in, api.PathBundles+b.SHA256)); got != 404 {
		t.Errorf("host downloading a bundle before any rollout: status %d, want 404", got)
	}
	r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Canary: 1})
	if d := sync(in); len(d.Patches) != 1 || d.Patches[0].Bundle != b.SHA256 {
		t.Fatalf("released host's desired state = %+v, want apply %s", d, b.SHA256)
	}
	for _, tc := range []struct {
		name   string
		c      *api.Client
		sha    string
		offset int64
		want   int
	}{
		{"released host", in, b.SHA256, 0, 200},
		{"released host, Range", in, b.SHA256, 1000, 200},
		{"released host, bundle of no rollout", in, unused.SHA256, 0, 404},
		{"released host, no such bundle", in, missing, 0, 404},
		{"host outside the rollout", out, b.SHA256, 0, 404},
		{"host outside the rollout, Range", out, b.SHA256, 1000, 404},
		{"host outside the rollout, no such bundle", out, missing, 0, 404},
		{"admin", e.admin, b.SHA256, 0, 200},
		{"admin, bundle of no rollout", e.admin, unused.SHA256, 0, 200},
	} {
		var buf strings.Builder
		n, restart, err := tc.c.Download(ctx, api.PathBundles+tc.sha, tc.offset, &buf)
		if got := status(err); got != tc.want || restart {
			t.Errorf("%s: Download(%.8s, offset %d) = status %d, restart %v; want %d, no restart", tc.name, tc.sha, tc.offset, got, restart, tc.want)
			continue
		}
		if tc.want == 200 && tc.sha == b.SHA256 && n != b.Size-tc.offset {
			t.Errorf("%s: Download(offset %d) = %d bytes, want %d", tc.name, tc.offset, n, b.Size-tc.offset)
		}
		if se, ok := err.(*api.StatusError); ok && se.Code != "not_found" {
			t.Errorf("%s: error code %q, want not_found like a bundle that does not exist", tc.name, se.Code)
		}
	}

	// Reverted: the host is told to revert, which downloads nothing.
	e.ok(errOf(e.admin.RolloutAction(ctx, r.ID, "revert", api.RolloutActionRequest{})))
	if d := sync(in); len(d.Patches) != 1 || d.Patches[0].Action != api.ActionRevert {
		t.Fatalf("desired state after revert = %+v, want one revert", d)
	}
	if got := status(download(in, api.PathBundles+b.SHA256)); got != 404 {
		t.Errorf("host downloading the bundle of a reverted rollout: status %d, want 404", got)
	}
}

func download(c *api.Client, path string) error {
	_, _, err := c.Download(context.Background(), path, 0, io.Discard)
	return err
}

// TestLongPollOutlivesBodyTimeout: the read deadline that bounds request
// bodies must not cut a long-poll held longer than it. (With Go 1.26 an
// expired deadline on the idle background read does not cancel the
// request either; the sync handler clears it anyway, and this test keeps
// the behaviour pinned.)
func TestLongPollOutlivesBodyTimeout(t *testing.T) {
	e := &env{t: t, o: envOpt{engine: "sqlite", dataDir: t.TempDir(), interval: 2 * time.Second, bodyTimeout: 300 * time.Millisecond}}
	e.dir = e.o.dataDir
	e.start("127.0.0.1:0")
	t.Cleanup(e.stop)
	e.useAdmin(e.srv.BootstrapTokenFile())
	c, err := e.enroll(e.enrollToken("stable", 0), "lp")
	if err != nil {
		t.Fatal(err)
	}
	host := e.client(c.Credential)
	var sr api.SyncResponse
	if err := host.Do(context.Background(), http.MethodPost, api.PathSync, api.Checkin{}, &sr); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = host.Do(context.Background(), http.MethodPost, api.PathSync+"?wait=2s&etag="+sr.Desired.ETag, api.Checkin{}, &sr)
	if err != nil || time.Since(start) < time.Second {
		t.Errorf("long-poll of 2s with a 300ms body timeout: %v after %v", err, time.Since(start))
	}
}

// TestLongPollEndsWithAgent: an agent that goes away mid long-poll frees
// the server's side at once, not at the end of the wait.
func TestLongPollEndsWithAgent(t *testing.T) {
	e := startEnv(t, envOpt{interval: 30 * time.Second})
	c, err := e.enroll(e.enrollToken("stable", 0), "gone")
	if err != nil {
		t.Fatal(err)
	}
	host := e.client(c.Credential)
	var sr api.SyncResponse
	if err := host.Do(context.Background(), http.MethodPost, api.PathSync, api.Checkin{}, &sr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go host.Do(ctx, http.MethodPost, api.PathSync+"?wait=30s&etag="+sr.Desired.ETag, api.Checkin{}, &sr)
	polls := func() float64 {
		mfs, _ := e.srv.Registry().Gather()
		for _, mf := range mfs {
			if mf.GetName() == "stent_server_longpolls" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	e.waitFor(30*time.Second, "the long-poll to be held", func() bool { return polls() == 1 })
	cancel()
	host.HTTP.CloseIdleConnections()
	e.waitFor(30*time.Second, "the server to drop the abandoned long-poll", func() bool { return polls() == 0 })
}
