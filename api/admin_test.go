package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestAdminClientPaths checks the requests the typed admin methods send:
// ids escaped as one path segment, queries, and no request at all for an
// empty id.
func TestAdminClientPaths(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Write([]byte("null")) // decodes into every answer type
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, HTTP: srv.Client()}
	ctx := context.Background()
	tests := []struct {
		call func() error
		want string
	}{
		{func() error { _, err := c.Host(ctx, "a/b c?"); return err }, "GET /v1/admin/hosts/a%2Fb%20c%3F"},
		{func() error { _, err := c.Rollout(ctx, "r_1", true); return err }, "GET /v1/admin/rollouts/r_1"},
		{func() error { _, err := c.Rollout(ctx, "r_1", false); return err }, "GET /v1/admin/rollouts/r_1?hosts=0"},
		{func() error { _, err := c.Rollouts(ctx); return err }, "GET /v1/admin/rollouts"},
		{func() error {
			_, err := c.RolloutAction(ctx, "r_1", "pause", RolloutActionRequest{})
			return err
		}, "POST /v1/admin/rollouts/r_1/pause"},
		{func() error {
			_, err := c.Audit(ctx, AuditQuery{Action: "host.apply", After: 7, Limit: 10})
			return err
		}, "GET /v1/admin/audit?action=host.apply&after=7&limit=10"},
		{func() error { _, err := c.Audit(ctx, AuditQuery{}); return err }, "GET /v1/admin/audit"},
		{func() error { return c.ApproveReboot(ctx, "web 1", RebootApproval{}) }, "POST /v1/admin/reboots/web%201/approve"},
		{func() error {
			_, err := c.PutWindow(ctx, MaintenanceWindow{Name: "tue/night"})
			return err
		}, "PUT /v1/admin/windows/tue%2Fnight"},
		{func() error { return c.DeleteWindow(ctx, "tue") }, "DELETE /v1/admin/windows/tue"},
	}
	for _, tt := range tests {
		got = nil
		if err := tt.call(); err != nil {
			t.Errorf("%s: %v", tt.want, err)
			continue
		}
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("requests = %q, want [%q]", got, tt.want)
		}
	}

	got = nil
	for _, tt := range []struct {
		call func() error
		want string
	}{
		{func() error { _, err := c.Host(ctx, ""); return err }, "host id is empty"},
		{func() error { return c.RevokeToken(ctx, "") }, "token id is empty"},
		{func() error { _, err := c.PutWindow(ctx, MaintenanceWindow{When: "daily 01:00-02:00 UTC"}); return err }, "window name is empty"},
		{func() error { _, err := c.RolloutAction(ctx, "r_1", "", RolloutActionRequest{}); return err }, "rollout action is empty: want pause, resume or revert"},
	} {
		if err := tt.call(); err == nil || err.Error() != tt.want {
			t.Errorf("error = %v, want %q", err, tt.want)
		}
	}
	if len(got) != 0 {
		t.Errorf("calls with an empty id sent %q, want nothing", got)
	}
}

// TestStatusErrorNamesCall checks that a failed admin call's StatusError
// names the method and path (what the command line's advice quotes)
// without putting them into its text.
func TestStatusErrorNamesCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"unknown token","code":"unauthorized"}`))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, HTTP: srv.Client()}
	_, err := c.Rollout(context.Background(), "r_1", false)
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Rollout = %v, want a *StatusError", err)
	}
	if se.Status != 401 || se.Method != "GET" || se.Path != "/v1/admin/rollouts/r_1?hosts=0" || se.Error() != "server answered 401: unknown token" {
		t.Errorf("Rollout error = %+v (%q), want 401 naming GET /v1/admin/rollouts/r_1?hosts=0", se, se.Error())
	}
	_, err = c.Inventories(context.Background(), map[string]string{"dc": "fra"}, func(*HostInventory) error { return nil })
	if !errors.As(err, &se) || se.Path != PathInventories {
		t.Errorf("Inventories error = %+v, want a *StatusError naming %s", err, PathInventories)
	}
}
