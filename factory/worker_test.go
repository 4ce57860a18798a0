package factory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/server"
)

// testServer runs a stent-server and returns an admin client and a
// function that enrolls a host running a kernel release and package
// version, with its inventory sent.
func testServer(t *testing.T) (*api.Client, func(hostname, release, version string)) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.AcceptAnySigner = t.TempDir(), true
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
	tok, err := os.ReadFile(srv.BootstrapTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	tlsOpt := api.TLSOptions{Fingerprint: srv.Fingerprint()}
	hc, err := api.NewHTTPClient(tlsOpt)
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	c := &api.Client{BaseURL: url, Token: strings.TrimSpace(string(tok)), HTTP: hc}
	et, err := c.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "t", Channel: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(hostname, release, version string) {
		t.Helper()
		cred, err := agent.Enroll(ctx, hc, url, tlsOpt, et.Secret, hostname, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		inv := inventory.Inventory{SchemaVersion: inventory.SchemaVersion, Hostname: hostname,
			OS:     inventory.OS{ID: "debian", Family: "deb", VersionID: "12"},
			Kernel: inventory.Kernel{Release: release, PackageVersion: version, BootTime: time.Now().Add(-time.Hour)}}
		b, _ := json.Marshal(inv)
		hcl := &api.Client{BaseURL: url, Token: cred.Credential, HTTP: hc}
		if err := hcl.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{Hostname: hostname, KernelRelease: release, Health: api.HealthOK, Inventory: b}, &api.SyncResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	return c, enroll
}

// fakeBuild stands for build.Build in the worker's unit test (the real
// builder runs in TestRunReal): it refuses any fix whose patch says
// "REFUSE", fails on "FAIL", and otherwise signs a bundle whose manifest is
// what build.Build would write.
func fakeBuild() func(ctx context.Context, o build.Options) (*build.Result, error) {
	return func(ctx context.Context, o build.Options) (*build.Result, error) {
		for _, p := range o.Patches {
			b, _ := os.ReadFile(p)
			switch {
			case bytes.Contains(b, []byte("REFUSE")):
				return nil, &elfdiff.RefusedError{Refusals: []elfdiff.Refusal{{Rule: "data-layout", Symbol: "nfsd4_slot", Reason: "changes the layout of struct nfsd4_slot"}}}
			case bytes.Contains(b, []byte("FAIL")):
				return nil, errors.New("make fs/nfsd/nfs4state.o: error: unknown type")
			}
		}
		m := &bundle.Manifest{FormatVersion: 1, Name: o.Name, Kernel: bundle.Kernel{Release: o.Kernel}, Level: 1, Replace: true, CVEs: o.CVEs,
			Description: "fake " + o.Name, Created: time.Now().UTC().Truncate(time.Second),
			Functions: []bundle.Function{{Object: "vmlinux", Name: "nfsd4_sequence"}}}
		if o.Cumulative != nil {
			m.Level = o.Cumulative.Level + 1
		}
		module := []byte("\x7fELF fake module for " + o.Name)
		if o.Key == nil {
			return &build.Result{Manifest: m, Module: module}, nil // as build.Build: unsigned
		}
		var buf bytes.Buffer
		if err := bundle.Create(&buf, m, module, o.Key); err != nil {
			return nil, err
		}
		pub := o.Key.Public().(ed25519.PublicKey)
		return &build.Result{Manifest: m, Module: module, Bundle: buf.Bytes(), KeyID: bundle.KeyIDOf(pub)}, nil
	}
}

// TestRun: one Run against a real server makes a job per kernel build the
// fleet runs at an older upload: cumulative on what is deployed, refusals
// with the builder's reason, a failed smoke test that publishes nothing,
// and a rollout or a wait for approval per the server's policy.
func TestRun(t *testing.T) {
	ctx := context.Background()
	c, enroll := testServer(t)
	enroll("a1", "6.1.0-55-amd64", "6.1.192-1")
	enroll("b1", "6.1.0-56-amd64", "6.1.192-2")
	enroll("b2", "6.1.0-56-amd64", "6.1.192-2")
	enroll("c1", "6.1.0-57-amd64", "6.1.192-3")
	enroll("d1", "6.1.0-54-cloud-amd64", "6.1.190-1")

	_, key, _ := ed25519.GenerateKey(rand.Reader)
	fixB := Fix{Upload: "6.1.192-3", Index: 2, Summary: "nfsd: preflight", CVEs: []string{"CVE-2026-99362"}, Files: []string{"fs/nfsd/nfs4state.c"}, Origin: OriginSource, Patch: "--- a/fs/nfsd/nfs4state.c\n+++ b/fs/nfsd/nfs4state.c\n"}
	fixA := Fix{Upload: "6.1.192-2", Index: 1, Summary: "ext4: fix", CVEs: []string{"CVE-2026-1111"}, Files: []string{"fs/ext4/mballoc.c"}, Origin: OriginSource, Patch: "REFUSE\n"}
	extract := func(ctx context.Context, from, to string, o Options) (*Upload, error) {
		switch from {
		case "6.1.192-2":
			return &Upload{Version: to, Previous: from, Fixes: []Fix{fixB}}, nil
		case "6.1.192-1":
			b := fixB
			b.Index = 2
			return &Upload{Version: to, Previous: from, Fixes: []Fix{fixA, b}}, nil
		case "6.1.190-1":
			return nil, errors.New("fix 6.1.192-1_3: fix does not apply to /tree")
		}
		return nil, errors.New("unexpected from " + from)
	}
	// 6.1.0-56 has a level-1 patch deployed already.
	old, err := fakeBuild()(ctx, build.Options{Kernel: "6.1.0-56-amd64", Name: "stent_ops_1", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBundle(ctx, old.Bundle); err != nil {
		t.Fatal(err)
	}
	w := &Worker{Client: c, Key: key, Build: fakeBuild(), Extract: extract,
		Smoke: func(ctx context.Context, kernel string, b []byte) error {
			if kernel == "6.1.0-55-amd64" {
				return errors.New("oops in the guest: BUG: unable to handle page fault")
			}
			return nil
		}}
	rep, err := w.Run(ctx, "6.1.192-2", "6.1.192-3")
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]api.FactoryJob{}
	for _, j := range rep.Jobs {
		jobs[j.Kernel] = j
	}
	if len(rep.Jobs) != 3 || !slices.ContainsFunc(rep.Skipped, func(s string) bool { return strings.HasPrefix(s, "6.1.0-57-amd64: at 6.1.192-3") }) {
		t.Fatalf("Run jobs %+v, skipped %q; want 3 jobs and 6.1.0-57 skipped", rep.Jobs, rep.Skipped)
	}
	// 6.1.0-55: fix A refused (with the builder's reason), fix B built,
	// then the smoke test fails: nothing is published.
	j := jobs["6.1.0-55-amd64"]
	if j.State != api.JobFailed || !strings.Contains(j.Error, "smoke test") || len(j.Refused) != 1 || j.Refused[0].Fix != 1 ||
		!strings.Contains(j.Refused[0].Reason, "layout of struct nfsd4_slot") || !slices.Equal(j.Fixes, []int{2}) {
		t.Errorf("job 6.1.0-55 = %+v, want failed smoke test, fix 1 refused, fix 2 kept", j)
	}
	// 6.1.0-56: level 2 on the deployed level 1, published, waiting for an
	// operator's approval under the default policy.
	j = jobs["6.1.0-56-amd64"]
	if j.State != api.JobPublished || j.Level != 2 || j.Cumulative == "" || j.Hosts != 2 || !strings.Contains(j.Waiting, "approval") || j.KeyID != bundle.KeyIDOf(key.Public().(ed25519.PublicKey)).String() {
		t.Errorf("job 6.1.0-56 = %+v, want published level 2 on the deployed bundle, waiting for approval, signed by the factory key", j)
	}
	// 6.1.0-54 (6.1.190-1): its fixes do not apply; the others went on.
	j = jobs["6.1.0-54-cloud-amd64"]
	if j.State != api.JobFailed || !strings.Contains(j.Error, "does not apply") {
		t.Errorf("job 6.1.0-54 = %+v, want failed: does not apply", j)
	}
	bs, err := c.Bundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 {
		t.Errorf("server has %d bundles, want 2 (the deployed one and 6.1.0-56's; 6.1.0-55's failed its smoke test)", len(bs))
	}
	st, err := c.FactoryStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Uploads) != 1 || len(st.Jobs) != 3 {
		t.Errorf("FactoryStatus = %d uploads, %d jobs; want 1, 3", len(st.Uploads), len(st.Jobs))
	}

	// With apply-livepatch unattended, the next upload rolls out to canary.
	if _, err := c.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "unattended": ["apply-livepatch"]}`}); err != nil {
		t.Fatal(err)
	}
	extract4 := func(ctx context.Context, from, to string, o Options) (*Upload, error) {
		f := fixB
		f.Upload, f.Index = to, 1
		return &Upload{Version: to, Previous: from, Fixes: []Fix{f}}, nil
	}
	w.Extract, w.Smoke = extract4, nil
	rep, err = w.Run(ctx, "6.1.192-3", "6.1.192-4")
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range rep.Jobs {
		if j.Kernel != "6.1.0-56-amd64" {
			continue
		}
		if j.State != api.JobRolledOut || j.Rollout == "" || j.Level != 3 || !slices.ContainsFunc(j.Steps, func(s api.FactoryStep) bool { return s.Name == SmokeSkipped }) {
			t.Errorf("job 6.1.192-4/6.1.0-56 = %+v, want rolled out at level 3, smoke test named as skipped", j)
		}
		ro, err := c.Rollout(ctx, j.Rollout, false)
		if err != nil || ro.Channel != "canary" {
			t.Errorf("Rollout(%s) = %+v, %v; want one to canary", j.Rollout, ro, err)
		}
	}
}

// TestRunParallel: with Parallel 2 the kernel builds of one upload are
// built and smoke-tested at once (each build here waits until the other
// has started), kernel builds at one package version share one Extract,
// one kernel's failed smoke test fails only its job, and the jobs come
// back in the order of their kernel releases; with Parallel 1 no two
// builds overlap.
func TestRunParallel(t *testing.T) {
	for _, parallel := range []int{1, 2} {
		t.Run(fmt.Sprint("parallel-", parallel), func(t *testing.T) {
			ctx := context.Background()
			c, enroll := testServer(t)
			enroll("a1", "6.1.0-56-cloud-amd64", "6.1.192-2")
			enroll("b1", "6.1.0-55-amd64", "6.1.192-1")
			enroll("c1", "6.1.0-56-amd64", "6.1.192-2")
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			fix := Fix{Upload: "6.1.192-3", Index: 1, Summary: "nfsd: preflight", CVEs: []string{"CVE-2026-99362"}, Files: []string{"fs/nfsd/nfs4state.c"}, Origin: OriginSource, Patch: "--- a/fs/nfsd/nfs4state.c\n+++ b/fs/nfsd/nfs4state.c\n"}
			var mu sync.Mutex
			extracts := map[string]int{}
			running, most, started := 0, 0, 0
			bothStarted := make(chan struct{})
			fake := fakeBuild()
			w := &Worker{Client: c, Key: key, Parallel: parallel,
				Extract: func(ctx context.Context, from, to string, o Options) (*Upload, error) {
					mu.Lock()
					extracts[from]++
					mu.Unlock()
					time.Sleep(50 * time.Millisecond) // a second job at this version arrives meanwhile
					return &Upload{Version: to, Previous: from, Fixes: []Fix{fix}}, nil
				},
				Build: func(ctx context.Context, o build.Options) (*build.Result, error) {
					mu.Lock()
					running++
					most = max(most, running)
					if started++; started == 2 {
						close(bothStarted)
					}
					mu.Unlock()
					defer func() { mu.Lock(); running--; mu.Unlock() }()
					if parallel > 1 {
						select {
						case <-bothStarted:
						case <-time.After(20 * time.Second):
							return nil, errors.New("the other kernel's build did not start meanwhile")
						}
					} else {
						time.Sleep(20 * time.Millisecond)
					}
					return fake(ctx, o)
				},
				Smoke: func(ctx context.Context, kernel string, b []byte) error {
					if kernel == "6.1.0-56-cloud-amd64" {
						return errors.New("BUG: unable to handle page fault")
					}
					return nil
				}}
			rep, err := w.Run(ctx, "6.1.192-2", "6.1.192-3")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, j := range rep.Jobs {
				got = append(got, j.Kernel+" "+j.State)
			}
			want := []string{"6.1.0-55-amd64 published", "6.1.0-56-amd64 published", "6.1.0-56-cloud-amd64 failed"}
			if !slices.Equal(got, want) {
				t.Errorf("Run jobs = %q, want %q (errors: %+v)", got, want, rep.Jobs)
			}
			if extracts["6.1.192-2"] != 1 || extracts["6.1.192-1"] != 1 {
				t.Errorf("Extract calls per earlier upload = %v, want one each", extracts)
			}
			if most != parallel {
				t.Errorf("at most %d builds ran at once, want %d", most, parallel)
			}
		})
	}
}
