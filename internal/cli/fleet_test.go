package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/server"
)

// startTestServer runs a stent-server in the test and points the admin
// commands at it through the environment.
func startTestServer(t *testing.T) (url, fingerprint string) {
	t.Helper()
	srv := startTestServerSrv(t)
	return os.Getenv("STENT_SERVER"), srv.Fingerprint()
}

// startTestServerSrv is startTestServer returning the server, for tests
// that reach into its store.
func startTestServerSrv(t *testing.T) *server.Server {
	t.Helper()
	return startTestServerWith(t, func(*server.Config) {})
}

// startTestServerWith is startTestServerSrv with the configuration first
// changed by set (feeds, say).
func startTestServerWith(t *testing.T, set func(*server.Config)) *server.Server {
	t.Helper()
	cfg := server.DefaultConfig()
	// The commands' output is under test here, not the publisher's key
	// (server/harden_test.go tests --keys-dir): any signer is accepted.
	cfg.DataDir, cfg.AcceptAnySigner = t.TempDir(), true
	set(&cfg)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "https://" + ln.Addr().String()
	t.Setenv("STENT_SERVER", url)
	t.Setenv("STENT_TOKEN_FILE", srv.BootstrapTokenFile())
	t.Setenv("STENT_SERVER_FINGERPRINT", srv.Fingerprint())
	t.Setenv("STENT_TOKEN", "")
	return srv
}

func TestFleetCommands(t *testing.T) {
	url, fp := startTestServer(t)
	root := t.TempDir()
	jsonOut := func(v any, args ...string) {
		t.Helper()
		out, errs, code := runCLI(t, root, args...)
		if code != 0 {
			t.Fatalf("stent %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("stent %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	var tok api.Token
	jsonOut(&tok, "fleet", "enroll-token", "--channel", "canary", "--label", "dc=fra", "--label", "role=db", "--max-uses", "1", "--json")
	if !strings.HasPrefix(tok.Secret, "ste_") || tok.Channel != "canary" {
		t.Fatalf("enroll-token = %+v", tok)
	}
	out, errs, code := runCLI(t, root, "agent", "--server", url, "--enroll", tok.Secret, "--fingerprint", fp, "--label", "role=db", "--enroll-only")
	if code != 0 || !strings.Contains(out, "enrolled as h_") {
		t.Fatalf("agent --enroll-only: exit %d, out %q, err %q", code, out, errs)
	}
	credFile := filepath.Join(root, "var/lib/stent/agent/credentials.json")
	if st, err := os.Stat(credFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v, %v; want mode 0600", st, err)
	}
	// Enrolling again is refused while enrolled; the token is used up anyway.
	if _, _, code := runCLI(t, root, "agent", "--server", url, "--enroll", tok.Secret, "--enroll-only"); code == 0 {
		t.Errorf("second enrollment of an enrolled host succeeded")
	}
	var st struct {
		HostID  string `json:"host_id"`
		Channel string `json:"channel"`
	}
	jsonOut(&st, "agent", "status", "--json")
	if st.Channel != "canary" || !strings.HasPrefix(st.HostID, "h_") {
		t.Errorf("agent status = %+v", st)
	}
	// Every key is snake_case, like the rest of the JSON stent prints.
	var keys map[string]json.RawMessage
	jsonOut(&keys, "agent", "status", "--json")
	for k := range keys {
		if k != strings.ToLower(k) {
			t.Errorf("agent status --json has key %q, want lower case", k)
		}
	}
	if _, ok := keys["ops"]; !ok {
		t.Errorf("agent status --json has no \"ops\" key: %v", keys)
	}

	// Publish: upload only, then with a rollout that (no host runs the
	// kernel) completes at once.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	data, err := fleetsim.MakeBundle(priv, "lp_cli", "6.1.0-56-amd64", 1, true, 256)
	if err != nil {
		t.Fatal(err)
	}
	bundlePath := filepath.Join(t.TempDir(), "lp_cli.stb")
	os.WriteFile(bundlePath, data, 0o644)
	var pub struct {
		Bundle  api.BundleInfo `json:"bundle"`
		Rollout *api.Rollout   `json:"rollout"`
	}
	jsonOut(&pub, "publish", bundlePath, "--no-rollout", "--json")
	if pub.Bundle.Name != "lp_cli" || pub.Rollout != nil {
		t.Errorf("publish --no-rollout = %+v", pub)
	}
	jsonOut(&pub, "publish", bundlePath, "--channel", "canary", "--waves", "50,100", "--max-failure-pct", "0", "--wait", "--timeout", "20s", "--json")
	if pub.Rollout == nil || pub.Rollout.State != api.RolloutCompleted || pub.Rollout.Waves[0] != 50 || pub.Rollout.MaxFailurePct != 0 {
		t.Errorf("publish --wait = %+v", pub.Rollout)
	}
	if _, errs, code := runCLI(t, root, "publish", bundlePath, "--waves", "50,90"); code == 0 || !strings.Contains(errs, "100") {
		t.Errorf("publish with waves not ending at 100: exit %d, %q", code, errs)
	}

	var fs api.FleetStatus
	jsonOut(&fs, "fleet", "status", "--json")
	if fs.Hosts != 1 || len(fs.Rollouts) != 1 {
		t.Errorf("fleet status = %+v, want 1 host and 1 rollout", fs)
	}
	out, _, code = runCLI(t, root, "fleet", "status")
	if code != 0 || !strings.Contains(out, "lp_cli") || !strings.Contains(out, "completed") {
		t.Errorf("fleet status text:\n%s", out)
	}
	if _, errs, code := runCLI(t, root, "fleet", "pause", pub.Rollout.ID); code == 0 || !strings.Contains(errs, "completed") {
		t.Errorf("pausing a completed rollout: exit %d, %q", code, errs)
	}
	var audit []api.AuditEntry
	jsonOut(&audit, "fleet", "audit", "--json")
	actions := map[string]bool{}
	for _, a := range audit {
		actions[a.Action] = true
	}
	for _, want := range []string{"enroll_token.create", "host.enroll", "bundle.publish", "rollout.create", "rollout.complete"} {
		if !actions[want] {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}

	// A viewer token can look but not publish (exit 4: forbidden).
	var viewer api.Token
	jsonOut(&viewer, "fleet", "token", "create", "--name", "ro", "--role", "viewer", "--json")
	t.Setenv("STENT_TOKEN", viewer.Secret)
	if _, _, code := runCLI(t, root, "fleet", "hosts"); code != 0 {
		t.Errorf("viewer listing hosts: exit %d", code)
	}
	if _, errs, code := runCLI(t, root, "publish", bundlePath); code != 4 {
		t.Errorf("viewer publishing: exit %d (%s), want 4", code, errs)
	}
	t.Setenv("STENT_TOKEN", "sta_wrong")
	if _, errs, code := runCLI(t, root, "fleet", "status"); code == 0 || !strings.Contains(errs, "--token") {
		t.Errorf("wrong token: exit %d, %q", code, errs)
	}
}
