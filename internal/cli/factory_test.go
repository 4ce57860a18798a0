package cli

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
)

// TestFactoryFixesBadInput: missing or backwards versions are refused with
// what to pass, before anything is downloaded.
func TestFactoryFixesBadInput(t *testing.T) {
	t.Setenv("STENT_CACHE", t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"factory", "fixes", "--to", "6.1.192-3"}, "--from 6.1.192-2 --to 6.1.192-3"},
		{[]string{"factory", "fixes", "--from", "6.1.192-3", "--to", "6.1.192-2"}, "not newer"},
		{[]string{"factory", "fixes", "--from", "x", "--to", "6.1.192-2"}, `from version "x"`},
		{[]string{"factory", "fixes", "--from", "6.1.192-2", "--to", "6.1.192-3", "--git", "/nonexistent"}, "--git needs --cna"},
		{[]string{"factory", "fixes", "--from", "6.1.192-2", "--to", "6.1.192-3", "--kernel", "6.1.0-56-amd64"}, "are for --triage"},
		{[]string{"factory", "fixes", "--from", "6.1.192-2", "--to", "6.1.192-3", "--triage", "--kernel", "6.1.0-56-amd64", "--config", "c"}, "not both"},
		{[]string{"factory", "fixes", "--from", "6.1.192-2", "--to", "6.1.192-3", "--triage", "--config", "/nonexistent/config"}, "kernel config: open /nonexistent/config"},
		{[]string{"factory", "fixes", "--from", "6.1.192-2", "--to", "6.1.192-3", "--triage", "--config", "/etc/hostname"}, "no CONFIG_ lines"},
	}
	for _, tt := range tests {
		code, _, stderr := execStent(t, tt.args...)
		if code != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("stent %s = exit %d, %q; want exit 1 and %q", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}

// TestFactoryStatus: stent factory status shows what the workers put on
// the server, in text and --json.
func TestFactoryStatus(t *testing.T) {
	startTestServer(t)
	root := t.TempDir()
	out, errs, code := runCLI(t, root, "factory", "status")
	if code != 0 || !strings.Contains(out, "No uploads yet.") {
		t.Fatalf("factory status (empty) = exit %d, %q, %q", code, out, errs)
	}
	sf := &serverFlags{server: os.Getenv("STENT_SERVER"), tokenFile: os.Getenv("STENT_TOKEN_FILE"), fingerprint: os.Getenv("STENT_SERVER_FINGERPRINT")}
	c, err := sf.client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.PutFactoryUpload(ctx, api.FactoryUpload{Version: "6.1.192-3", Previous: "6.1.192-2",
		Fixes: []api.FactoryFix{{Index: 1, Upload: "6.1.192-3", Summary: "nfsd: preflight SEQUENCE replies", CVEs: []string{"CVE-2026-99362"}, Files: []string{"fs/nfsd/nfs4state.c"}, Origin: "source-diff"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutFactoryJob(ctx, api.FactoryJob{ID: "6.1.192-3/6.1.0-55-amd64", Upload: "6.1.192-3", Kernel: "6.1.0-55-amd64", Hosts: 1, State: api.JobRefused,
		Refused: []api.FactoryRefusal{{Fix: 1, CVEs: []string{"CVE-2026-99362"}, Reason: "changes the layout of struct nfsd4_slot"}},
		Steps:   []api.FactoryStep{{Name: "build", Duration: 95 * time.Second}}}); err != nil {
		t.Fatal(err)
	}
	out, errs, code = runCLI(t, root, "factory", "status")
	for _, want := range []string{"Upload 6.1.192-3 (over 6.1.192-2)", "fix 1  nfsd: preflight SEQUENCE replies  [CVE-2026-99362; source-diff]",
		"kernel 6.1.0-55-amd64 (1 hosts): refused (build 95.0s)", "fix 1 refused (CVE-2026-99362): changes the layout of struct nfsd4_slot"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("factory status = exit %d, %q (%s); want %q", code, out, errs, want)
		}
	}
	out, _, code = runCLI(t, root, "factory", "status", "--json")
	var st api.FactoryStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st.Jobs) != 1 || st.Jobs[0].Refused[0].Fix != 1 {
		t.Errorf("factory status --json = exit %d, %v, %+v", code, err, st)
	}
}
