package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/store"
)

// TestFleetInventoriesThenPlan: simulated agents report the inventories of
// policy/testdata/fleet; "fleet inventories" writes one file per host that
// has one (not the revoked host's, not the silent host's), and "plan
// --inventory DIR" plans every one of them.
func TestFleetInventoriesThenPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and agents")
	}
	url, fp := startTestServer(t)
	root := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, errs, code := runCLI(t, root, args...)
		if code != 0 {
			t.Fatalf("stent %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return out
	}
	var tok api.Token
	if err := json.Unmarshal([]byte(run("fleet", "enroll-token", "--json")), &tok); err != nil {
		t.Fatal(err)
	}

	// Hosts 0-4 report the fleet's inventories, host 5 none, host 6 one
	// and is then revoked.
	files := []string{"web1", "web2", "db1", "app1", "alma1", "", "web1"}
	invs := make([]json.RawMessage, len(files))
	for i, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(policyData, "fleet", f+".json"))
		if err != nil {
			t.Fatal(err)
		}
		invs[i] = b
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	fl, err := fleetsim.Enroll(context.Background(), fleetsim.Config{
		Server: url, Fingerprint: fp, EnrollToken: tok.Secret, N: len(files), Kernel: "6.1.0-54-amd64",
		Keys: bundle.NewKeyring(pub), Dir: t.TempDir(), MaxBackoff: 500 * time.Millisecond,
		TokenFor: func(labels map[string]string) (string, error) {
			args := []string{"fleet", "enroll-token", "--json"}
			for k, v := range labels {
				args = append(args, "--label", k+"="+v)
			}
			var t api.Token
			err := json.Unmarshal([]byte(run(args...)), &t)
			return t.Secret, err
		},
		Labels: func(i int) map[string]string {
			if files[i] == "db1" {
				return map[string]string{"role": "db"}
			}
			return map[string]string{"role": "app"}
		},
		Inventory: func(i int) json.RawMessage { return invs[i] },
	})
	if err != nil {
		t.Fatal(err)
	}
	fl.Start(context.Background())
	t.Cleanup(fl.Stop)
	revoked := fl.Hosts[6].Creds.HostID
	silent := fl.Hosts[5]

	out := filepath.Join(t.TempDir(), "inv")
	var sum inventoriesSummary
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := json.Unmarshal([]byte(run("fleet", "inventories", "--out", out, "--json")), &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Written == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet inventories after 30s = %+v, want 6 written", sum)
		}
		time.Sleep(100 * time.Millisecond)
	}
	run("fleet", "revoke-host", revoked)
	os.RemoveAll(out)
	if err := json.Unmarshal([]byte(run("fleet", "inventories", "--out", out, "--json")), &sum); err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{}
	for _, h := range fl.Hosts[:5] {
		wantFiles = append(wantFiles, h.Name+"_"+h.Creds.HostID+".json")
	}
	sort.Strings(wantFiles)
	gotFiles, _ := filepath.Glob(filepath.Join(out, "*.json"))
	for i := range gotFiles {
		gotFiles[i] = filepath.Base(gotFiles[i])
	}
	if d := cmp.Diff(wantFiles, gotFiles); d != "" {
		t.Errorf("files written (-want +got):\n%s", d)
	}
	if sum.Hosts != 6 || sum.Written != 5 || len(sum.Missing) != 1 || sum.Missing[0].HostID != silent.Creds.HostID || sum.Missing[0].Hostname != silent.Name || sum.Bytes == 0 {
		t.Errorf("fleet inventories = %+v, want 6 hosts, 5 written, %s (%s) missing", sum, silent.Creds.HostID, silent.Name)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("inventory folder: %v, %v; want mode 0755", st, err)
	}
	text := run("fleet", "inventories", "--out", out)
	for _, want := range []string{"Wrote 5 of 6 hosts' inventories", "No inventory from 1 hosts", silent.Creds.HostID} {
		if !strings.Contains(text, want) {
			t.Errorf("fleet inventories output lacks %q:\n%s", want, text)
		}
	}

	// The folder is what plan takes.
	code, stdout, stderr := execStent(t, append([]string{"plan", "--inventory", out, "--json"}, feedArgs()...)...)
	if code != 0 {
		t.Fatalf("plan --inventory %s: exit %d: %s", out, code, stderr)
	}
	var plan policy.FleetPlan
	if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
		t.Fatal(err)
	}
	var planned, hostnames []string
	for _, h := range plan.Hosts {
		planned = append(planned, filepath.Base(h.Inventory))
		hostnames = append(hostnames, h.Hostname)
	}
	sort.Strings(planned)
	sort.Strings(hostnames)
	if d := cmp.Diff(wantFiles, planned); d != "" {
		t.Errorf("plan hosts' inventories (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"alma1", "app1", "db1", "web1", "web2"}, hostnames); d != "" {
		t.Errorf("plan hostnames (-want +got):\n%s", d)
	}

	// A selector narrows the export; a file left from elsewhere is named.
	os.WriteFile(filepath.Join(out, "old.json"), []byte("{}"), 0o644)
	if err := json.Unmarshal([]byte(run("fleet", "inventories", "--out", out, "--selector", "role=db", "--json")), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Hosts != 1 || sum.Written != 1 || len(sum.Others) != 5 || !strings.Contains(strings.Join(sum.Others, ","), "old.json") {
		t.Errorf("fleet inventories --selector role=db = %+v, want 1 host written and the 5 other files named", sum)
	}
	if _, errs, code := runCLI(t, root, "fleet", "inventories", "--out", out, "--selector", "role"); code != 1 || !strings.Contains(errs, "--selector") {
		t.Errorf("fleet inventories --selector role = exit %d, %q; want 1", code, errs)
	}
}

func TestInventoryFileName(t *testing.T) {
	tests := []struct{ hostname, id, want string }{
		{"web1", "h_abc", "web1_h_abc.json"},
		{"../../etc/passwd", "h_1", "_.._etc_passwd_h_1.json"},
		{".hidden", "h_2", "hidden_h_2.json"},
		{"", "h_3", "h_3.json"},
		{"db 1/a", "h/4", "db_1_a_h_4.json"},
	}
	for _, tt := range tests {
		if got := inventoryFileName(tt.hostname, tt.id); got != tt.want {
			t.Errorf("inventoryFileName(%q, %q) = %q, want %q", tt.hostname, tt.id, got, tt.want)
		}
	}
}

// TestFleetInventoriesSkipsUnreadable: an inventory stored before the
// server checked them ({"inventory":123}) is named in the summary and left
// out; the other hosts are written and planned (issue 12, part 2).
func TestFleetInventoriesSkipsUnreadable(t *testing.T) {
	srv := startTestServerSrv(t)
	url, fp := os.Getenv("STENT_SERVER"), srv.Fingerprint()
	root := t.TempDir()
	ctx := context.Background()
	out, errs, code := runCLI(t, root, "fleet", "enroll-token", "--json")
	if code != 0 {
		t.Fatalf("enroll-token: %s", errs)
	}
	var tok api.Token
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatal(err)
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(policyData, "fleet", "web2.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, inv := range []json.RawMessage{good, nil} {
		c, err := agent.Enroll(ctx, hc, url, api.TLSOptions{Fingerprint: fp}, tok.Secret, fmt.Sprintf("inv-%d", i), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		cl := &api.Client{BaseURL: url, Token: c.Credential, HTTP: hc}
		if err := cl.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: "6.1.0-54-amd64", Inventory: inv}, &api.SyncResponse{}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.HostID)
	}
	// What an older server let in.
	err = srv.Store().Update(ctx, func(tx *store.Tx) error {
		return tx.SaveCheckin(ctx, &store.Checkin{HostID: ids[1], At: time.Now(), Checkin: api.Checkin{Hostname: "inv-1", Inventory: json.RawMessage(`123`)}})
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "inv")
	out, errs, code = runCLI(t, root, "fleet", "inventories", "--out", dir, "--json")
	if code != 0 {
		t.Fatalf("fleet inventories: exit %d: %s", code, errs)
	}
	var sum inventoriesSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Written != 1 || len(sum.Unreadable) != 1 || sum.Unreadable[0].HostID != ids[1] || !strings.Contains(sum.Unreadable[0].Error, "cannot unmarshal number") {
		t.Errorf("fleet inventories = %+v, want 1 written and %s unreadable", sum, ids[1])
	}
	text, _, _ := runCLI(t, root, "fleet", "inventories", "--out", dir)
	if !strings.Contains(text, "Unreadable inventory from 1 hosts") || !strings.Contains(text, ids[1]) {
		t.Errorf("fleet inventories output does not name the unreadable host:\n%s", text)
	}
	code, _, stderr := execStent(t, append([]string{"plan", "--inventory", dir, "--json"}, feedArgs()...)...)
	if code != 0 {
		t.Errorf("plan --inventory %s: exit %d: %s", dir, code, stderr)
	}
}
