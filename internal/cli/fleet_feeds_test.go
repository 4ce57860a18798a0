package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/feedtest"
	"github.com/stent-dev/stent/server"
)

// stent fleet feeds lists the feeds a real server keeps (one local, one
// from an HTTPS mirror, and its published bundles), and, once the mirror
// serves garbage, --refresh shows the feed failing with the good copy in
// use and why; a viewer may not --refresh.
func TestFleetFeedsCommand(t *testing.T) {
	mirror := feedtest.New(t)
	mirror.PutFile(t, "/vulns.tar.gz", filepath.Join(vulnData, "kernel-cna-sample.tar.gz"))
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.AcceptAnySigner = t.TempDir(), true
	cfg.Feeds = []string{"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"), "cna=" + mirror.URL + "/vulns.tar.gz"}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{Log: slog.New(slog.DiscardHandler), FeedClient: mirror.Client()})
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
	t.Setenv("STENT_SERVER", "https://"+ln.Addr().String())
	t.Setenv("STENT_TOKEN_FILE", srv.BootstrapTokenFile())
	t.Setenv("STENT_SERVER_FINGERPRINT", srv.Fingerprint())
	t.Setenv("STENT_TOKEN", "")
	root := t.TempDir()

	var st api.FeedsStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, stderr, code := runCLI(t, root, "fleet", "feeds", "--json")
		if code != 0 {
			t.Fatalf("stent fleet feeds --json = exit %d: %s", code, stderr)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("stent fleet feeds --json printed %q: %v", out, err)
		}
		if st.Generation > 0 && len(st.Feeds) == 3 && st.Feeds[1].InUse {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("feeds not loaded: %s", out)
		}
	}
	if st.Feeds[0].Records != 70 || st.Feeds[1].Records != 300 || st.Feeds[2].Location != server.PublishedFeedLocation {
		t.Errorf("stent fleet feeds --json = %+v", st.Feeds)
	}
	out, _, code := runCLI(t, root, "fleet", "feeds")
	for _, want := range []string{"Vulnerability database: generation 2", "Feeds are refreshed every 1h0m0s.", "KIND", "debian-changelog", "70", "cna", mirror.URL + "/vulns.tar.gz", "300", "livepatch", "stent-server:published-bundles", "no bundles published"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("stent fleet feeds lacks %q:\n%s", want, out)
		}
	}

	mirror.Put("/vulns.tar.gz", []byte("Service Unavailable\n"))
	out, stderr, code := runCLI(t, root, "fleet", "feeds", "--refresh")
	for _, want := range []string{"FAILING (1 in a row), the last good copy in use", "cna=" + mirror.URL + "/vulns.tar.gz: refusing the download of " + mirror.URL + "/vulns.tar.gz: " + mirror.URL + "/vulns.tar.gz: gzip"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("stent fleet feeds --refresh (garbage) = exit %d %s, lacks %q:\n%s", code, stderr, want, out)
		}
	}

	tokFile, _ := os.ReadFile(srv.BootstrapTokenFile())
	hc, _ := api.NewHTTPClient(api.TLSOptions{Fingerprint: srv.Fingerprint()})
	adm := &api.Client{BaseURL: "https://" + ln.Addr().String(), Token: strings.TrimSpace(string(tokFile)), HTTP: hc}
	viewer, err := adm.CreateToken(context.Background(), api.TokenRequest{Name: "ro", Role: api.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, root, "fleet", "--token", viewer.Secret, "feeds", "--refresh"); code != 4 || !strings.Contains(stderr, "403") {
		t.Errorf("stent fleet feeds --refresh as a viewer = exit %d, %q; want 4 and 403", code, stderr)
	}
	if _, stderr, code := runCLI(t, root, "fleet", "--token", viewer.Secret, "feeds"); code != 0 {
		t.Errorf("stent fleet feeds as a viewer = exit %d, %q", code, stderr)
	}
}
