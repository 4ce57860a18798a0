package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/server"
	"github.com/stent-dev/stent/store/storetest"
)

// manualHosts enrolls n hosts named prefix-0..n-1 through one token and
// checks each in once with the test kernel; it returns their clients.
func (e *env) manualHosts(prefix string, n int) ([]*agent.Credentials, []*api.Client) {
	e.t.Helper()
	tok := e.enrollToken("stable", 0)
	var creds []*agent.Credentials
	var cls []*api.Client
	for i := range n {
		c, err := e.enroll(tok, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			e.t.Fatal(err)
		}
		cl := e.client(c.Credential)
		if err := cl.Do(context.Background(), http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Health: api.HealthOK}, &api.SyncResponse{}); err != nil {
			e.t.Fatal(err)
		}
		creds, cls = append(creds, c), append(cls, cl)
	}
	return creds, cls
}

// TestReportsFromUnreleasedHosts: a host that is in a rollout but not yet
// released reports apply/failed; its row stays pending and the rollout
// counts no failure (issue 12, part 7). A report about a rollout the host
// is not part of is refused (part 1).
func TestReportsFromUnreleasedHosts(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			e := startEnv(t, envOpt{engine: eng})
			ctx := context.Background()
			creds, cls := e.manualHosts("rel", 3)
			b := e.publish("lp_rel", 1, true, 512)
			r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Canary: 1, MaxFailurePct: ptr(50.0)})
			r = e.waitState(r.ID, api.RolloutRunning, 10*time.Second)
			unreleased := -1
			for _, rh := range r.Hosts {
				if rh.Wave > r.Wave {
					for i, c := range creds {
						if c.HostID == rh.HostID {
							unreleased = i
						}
					}
				}
			}
			if unreleased < 0 {
				t.Fatalf("rollout %+v has no unreleased host", r)
			}
			err := cls[unreleased].Do(ctx, http.MethodPost, api.PathReport, api.Report{RequestID: "early", Action: api.ActionApply, Rollout: r.ID,
				Name: "lp_rel", Bundle: b.SHA256, Result: api.ResultFailed, Error: "made up", At: time.Now()}, &api.ReportResponse{})
			if err != nil {
				t.Fatalf("report from an unreleased host: %v", err)
			}
			r = e.rollout(r.ID)
			for _, rh := range r.Hosts {
				if rh.HostID == creds[unreleased].HostID && rh.State != api.HostPending {
					t.Errorf("unreleased host's row after its apply/failed report: %s (%s), want pending", rh.State, rh.Error)
				}
			}
			if r.Counts.Failed != 0 {
				t.Errorf("rollout counts after a report from an unreleased host: %+v, want no failure", r.Counts)
			}
			// A rollout the host is not in.
			err = cls[0].Do(ctx, http.MethodPost, api.PathReport, api.Report{RequestID: "other", Action: api.ActionApply, Rollout: "r_0000000000000000",
				Result: api.ResultOK, At: time.Now()}, &api.ReportResponse{})
			if got := status(err); got != http.StatusNotFound {
				t.Errorf("report about a rollout the host is not in: status %d (%v), want 404", got, err)
			}
		})
	}
}

// TestCheckinInventoryValidated: an inventory the planner cannot read is
// refused at check-in with a 400 naming the field, and not stored; one it
// can read is stored (issue 12, part 2).
func TestCheckinInventoryValidated(t *testing.T) {
	e := startEnv(t, envOpt{})
	ctx := context.Background()
	_, cls := e.manualHosts("inv", 1)
	good, err := os.ReadFile("../policy/testdata/fleet/web1.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`123`, `{"schema_version":1,"hostname":"x"}`, `"text"`, `{"schema_version":1,"os":{"id":7}}`} {
		err := cls[0].Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Inventory: json.RawMessage(bad)}, &api.SyncResponse{})
		if got := status(err); got != http.StatusBadRequest || !strings.Contains(err.Error(), "inventory") {
			t.Errorf("check-in with inventory %s: status %d (%v), want 400 naming the inventory", bad, got, err)
		}
	}
	var n int
	_, err = e.admin.Inventories(ctx, nil, func(h *api.HostInventory) error {
		if len(h.Inventory) > 0 {
			n++
		}
		return nil
	})
	if err != nil || n != 0 {
		t.Errorf("inventories after refused check-ins: %d stored (%v), want 0", n, err)
	}
	if err := cls[0].Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: kernel, Inventory: good}, &api.SyncResponse{}); err != nil {
		t.Errorf("check-in with a good inventory: %v", err)
	}
}

func (e *env) enrollReq(req api.EnrollRequest) (*agent.Credentials, error) {
	return agent.EnrollWith(context.Background(), e.admin.HTTP, e.url, api.TLSOptions{Fingerprint: e.fp}, req)
}

func (e *env) sync(cred string, c api.Checkin) error {
	return e.client(cred).Do(context.Background(), http.MethodPost, api.PathSync, c, &api.SyncResponse{})
}

func (e *env) host(id string) api.Host {
	e.t.Helper()
	h, err := e.admin.Host(context.Background(), id)
	e.ok(err)
	return *h
}

// TestEnrollLabelsFromToken: a host gets the enrollment token's labels
// only; a label the token does not set is refused (issue 12, part 6).
func TestEnrollLabelsFromToken(t *testing.T) {
	e := startEnv(t, envOpt{})
	tok, err := e.admin.CreateEnrollToken(context.Background(), api.EnrollTokenRequest{Name: "fra", Channel: "stable", Labels: map[string]string{"dc": "fra"}})
	e.ok(err)
	for _, labels := range []map[string]string{{"canary": "true"}, {"dc": "ams"}, {"dc": "fra", "role": "db"}} {
		c, err := e.enrollReq(api.EnrollRequest{Token: tok.Secret, Hostname: "lab-x", Labels: labels})
		if got := status(err); got != http.StatusBadRequest {
			t.Errorf("enroll with labels %v through a token with dc=fra: status %d (%v, %+v), want 400", labels, got, err, c)
		}
	}
	for i, labels := range []map[string]string{nil, {"dc": "fra"}} {
		c, err := e.enrollReq(api.EnrollRequest{Token: tok.Secret, Hostname: fmt.Sprintf("lab-%d", i), Labels: labels})
		if err != nil {
			t.Fatalf("enroll with labels %v: %v", labels, err)
		}
		if got := e.host(c.HostID).Labels; len(got) != 1 || got["dc"] != "fra" || len(c.Labels) != 1 {
			t.Errorf("host enrolled with labels %v has labels %v (told %v), want dc=fra only", labels, got, c.Labels)
		}
	}
}

// TestEnrollReplaceNeedsCredential: through one shared token, enrolling
// with another host's machine ID or hostname is refused and leaves that
// host alone; with the old credential it replaces the host; after an
// operator revokes the host, the machine enrolls again (issue 12, part 3).
func TestEnrollReplaceNeedsCredential(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			e := startEnv(t, envOpt{engine: eng})
			shared := e.enrollToken("stable", 0)
			victim, err := e.enrollReq(api.EnrollRequest{Token: shared, Hostname: "web-1", MachineID: "0123456789abcdef0123456789abcdef"})
			if err != nil {
				t.Fatal(err)
			}
			for _, req := range []api.EnrollRequest{
				{Token: shared, Hostname: "intruder", MachineID: "0123456789abcdef0123456789abcdef"},
				{Token: shared, Hostname: "web-1", MachineID: "ffff"},
				{Token: shared, Hostname: "web-1"},
			} {
				if _, err := e.enrollReq(req); status(err) != http.StatusConflict {
					t.Errorf("enroll %s/%s over host web-1: %v, want 409", req.Hostname, req.MachineID, err)
				}
			}
			if err := e.sync(victim.Credential, api.Checkin{KernelRelease: kernel}); err != nil {
				t.Errorf("host after enrollments claiming its machine ID and name: %v, want it still enrolled", err)
			}
			if _, err := e.enrollReq(api.EnrollRequest{Token: shared, Hostname: "web-1", Replaces: "sth_made_up"}); status(err) != http.StatusUnauthorized {
				t.Errorf("enroll replacing with a made-up credential: %v, want 401", err)
			}
			// The machine itself, with its credential.
			again, err := e.enrollReq(api.EnrollRequest{Token: shared, Hostname: "web-1", MachineID: "0123456789abcdef0123456789abcdef", Replaces: victim.Credential})
			if err != nil {
				t.Fatalf("enroll again with the old credential: %v", err)
			}
			if err := e.sync(victim.Credential, api.Checkin{KernelRelease: kernel}); status(err) != http.StatusUnauthorized {
				t.Errorf("old credential after its replacement: %v, want 401", err)
			}
			if h := e.host(again.HostID); h.Hostname != "web-1" || h.Revoked {
				t.Errorf("replacement host = %+v, want web-1 enrolled", h)
			}
			// An operator's approval: revoke, then the machine enrolls.
			e.ok(e.admin.RevokeHost(context.Background(), again.HostID))
			if _, err := e.enrollReq(api.EnrollRequest{Token: shared, Hostname: "web-1", MachineID: "0123456789abcdef0123456789abcdef"}); err != nil {
				t.Errorf("enroll after the operator revoked the old host: %v", err)
			}
		})
	}
}

// TestHostTextChecked: hostnames, health and patch names with terminal
// escapes or bidi overrides are refused, and a host cannot rename itself to
// another host's name (issue 12, part 5).
func TestHostTextChecked(t *testing.T) {
	e := startEnv(t, envOpt{})
	tok := e.enrollToken("stable", 0)
	for _, name := range []string{"\x1b[2J\x1b[31mweb", "web\u202e1", "a b", "", strings.Repeat("a", 300)} {
		if _, err := e.enrollReq(api.EnrollRequest{Token: tok, Hostname: name}); status(err) != http.StatusBadRequest {
			t.Errorf("enroll as %q: %v, want 400", name, err)
		}
	}
	creds, _ := e.manualHosts("txt", 2)
	for i, c := range []api.Checkin{
		{Hostname: "txt\x1b]0;owned\x07"},
		{Health: "ok\x1b[1A"},
		{Health: "fine"},
		{Patches: []api.PatchState{{Name: "lp\u202efix", Enabled: true}}},
		{Patches: []api.PatchState{{Name: "lp_ok", Bundle: "\x1b[31m"}}},
		{KernelRelease: "6.1\n0"},
		{HealthDetail: strings.Repeat("x", 100000)},
	} {
		if err := e.sync(creds[0].Credential, c); status(err) != http.StatusBadRequest {
			t.Errorf("check-in #%d (%.80q...): %v, want 400", i, fmt.Sprintf("%+v", c), err)
		}
	}
	if err := e.sync(creds[0].Credential, api.Checkin{Hostname: "txt-1", KernelRelease: kernel}); err != nil {
		t.Fatal(err)
	}
	if h := e.host(creds[0].HostID); h.Hostname != "txt-0" {
		t.Errorf("host renamed itself to another host's name: hostname now %q, want txt-0 kept", h.Hostname)
	}
	if err := e.sync(creds[0].Credential, api.Checkin{Hostname: "txt-new", KernelRelease: kernel}); err != nil {
		t.Fatal(err)
	}
	if h := e.host(creds[0].HostID); h.Hostname != "txt-new" {
		t.Errorf("host renamed itself to a free name: hostname %q, want txt-new", h.Hostname)
	}
}

// TestHostCannotFillStore: report fields are capped, one host's reports are
// rate limited (429), and a full store answers 507 and fails /healthz
// instead of "500 internal error" (issue 12, part 1).
func TestHostCannotFillStore(t *testing.T) {
	e := startEnv(t, envOpt{})
	ctx := context.Background()
	_, cls := e.manualHosts("fill", 1)
	report := func(i int, name string) error {
		return cls[0].Do(ctx, http.MethodPost, api.PathReport, api.Report{RequestID: fmt.Sprintf("r%d", i), Action: api.ActionReboot,
			Name: name, Result: api.ResultOK, At: time.Now()}, &api.ReportResponse{})
	}
	if err := report(0, strings.Repeat("n", 60000)); status(err) != http.StatusBadRequest {
		t.Errorf("report with a 60,000-byte name: %v, want 400", err)
	}
	limited := -1
	for i := 1; i <= 200; i++ {
		if err := report(i, ""); err != nil {
			if status(err) != http.StatusTooManyRequests {
				t.Fatalf("report %d: %v", i, err)
			}
			limited = i
			break
		}
	}
	if limited < 0 || limited > 100 {
		t.Errorf("reports from one host: first refused at %d, want 429 within 100", limited)
	}
	// Fill the store: writes fail as on a full disk.
	tok := e.enrollToken("stable", 0)
	st := e.srv.Store()
	pages, err := st.SQLitePages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.LimitSQLiteSize(ctx, pages); err != nil {
		t.Fatal(err)
	}
	var full error
	for i := 0; i < 500 && full == nil; i++ {
		_, full = e.enroll(tok, fmt.Sprintf("fill-x%d", i))
	}
	if status(full) != http.StatusInsufficientStorage {
		t.Errorf("enroll into a full store: %v, want 507", full)
	}
	if code, body := health(strings.TrimPrefix(e.url, "https://")); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with a full store: %d %q, want 503", code, body)
	}
}

// TestTLSSuites: on TLS 1.2 the server speaks ECDHE with an AEAD only; a
// client offering nothing but CBC-SHA1 suites is refused (issue 12, part 9).
func TestTLSSuites(t *testing.T) {
	e := startEnv(t, envOpt{})
	addr := strings.TrimPrefix(e.url, "https://")
	for _, tt := range []struct {
		suite uint16
		ok    bool
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
	} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tt.suite}})
		if err == nil {
			c.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("TLS 1.2 client offering only %s: %v, want success %v", tls.CipherSuiteName(tt.suite), err, tt.ok)
		}
	}
}

// TestPublisherKeysRequired: a server refuses to start without trusted
// publisher keys unless told to accept any signer, and with them refuses
// to publish a bundle another key signed (issue 12, part 9).
func TestPublisherKeysRequired(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	if _, err := server.New(context.Background(), cfg, server.Options{Log: testLog(t)}); err == nil || !strings.Contains(err.Error(), "no trusted publisher keys: give --keys-dir") {
		t.Errorf("server.New without --keys-dir = %v, want it refused naming --keys-dir and --accept-any-signer", err)
	}
	cfg.KeysDir, cfg.AcceptAnySigner = t.TempDir(), true
	if _, err := server.New(context.Background(), cfg, server.Options{Log: testLog(t)}); err == nil || !strings.Contains(err.Error(), "contradict") {
		t.Errorf("server.New with --keys-dir and --accept-any-signer = %v, want it refused", err)
	}

	e := startEnv(t, envOpt{})
	e.publish("lp_trusted", 1, true, 256)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	data, err := fleetsim.MakeBundle(other, "lp_other", kernel, 1, true, 256)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.admin.PublishBundle(context.Background(), data)
	if !api.IsStatus(err, http.StatusBadRequest) && !api.IsStatus(err, http.StatusUnprocessableEntity) {
		t.Errorf("publishing a bundle of an untrusted key = %v, want it refused", err)
	}

	e2 := startEnv(t, envOpt{anySigner: true})
	if _, err := e2.admin.PublishBundle(context.Background(), data); err != nil {
		t.Errorf("publishing with --accept-any-signer: %v", err)
	}
}
