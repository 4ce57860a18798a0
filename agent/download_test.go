package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
)

// TestDownloadBounded: a server that sends more than it announced (or,
// with no size, more than any bundle) does not get to fill the disk; the
// bundle is refused and nothing is left behind.
func TestDownloadBounded(t *testing.T) {
	// The server sends without end, until the client hangs up.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	old := maxDownload
	maxDownload = 64 << 10
	defer func() { maxDownload = old }()

	for _, size := range []int64{1000, 0} {
		dir := t.TempDir()
		a, err := New(Config{Runtime: nopRuntime{}, Verifier: nopVerifier{}, Dir: dir, HTTPClient: srv.Client(), State: &MemState{}},
			&Credentials{Server: srv.URL, Credential: "sth_x"})
		if err != nil {
			t.Fatal(err)
		}
		p := api.DesiredPatch{Bundle: strings.Repeat("ab", 32), Size: size, Name: "lp_x", Action: api.ActionApply}
		// A bound that only a hang reaches: the refusal comes after 64 KiB.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err = a.download(ctx, p)
		cancel()
		var rf *refusal
		if !errors.As(err, &rf) {
			t.Errorf("download(size %d) of an endless body = %v, want a refusal", size, err)
		}
		var total int64
		filepath.Walk(filepath.Join(dir, "downloads"), func(_ string, fi os.FileInfo, _ error) error {
			if fi != nil && !fi.IsDir() {
				total += fi.Size()
			}
			return nil
		})
		if total != 0 {
			t.Errorf("download(size %d) left %d bytes on disk, want none", size, total)
		}
	}
}

type nopRuntime struct{}

func (nopRuntime) Status(context.Context) (*RuntimeStatus, error) { return &RuntimeStatus{}, nil }
func (nopRuntime) Apply(context.Context, string) (string, error)  { return "", nil }
func (nopRuntime) Revert(context.Context, string) error           { return nil }

type nopVerifier struct{}

func (nopVerifier) Verify([]byte) (*api.BundleInfo, error) { return nil, errors.New("not used") }

// TestDownloadNotFoundResyncs: the server 404s a bundle that left the
// host's desired state after the sync that named it (pause, revert, a newer
// level). The agent resyncs before reporting anything, and reports a
// failure only when a fresh desired state still names the bundle.
func TestDownloadNotFoundResyncs(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"not_found","message":"no bundle"}`))
	}))
	defer srv.Close()
	a, err := New(Config{Runtime: nopRuntime{}, Verifier: nopVerifier{}, Dir: t.TempDir(), HTTPClient: srv.Client(), State: &MemState{}},
		&Credentials{Server: srv.URL, Credential: "sth_x"})
	if err != nil {
		t.Fatal(err)
	}
	if a.st, err = a.cfg.State.Load(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := api.DesiredPatch{Rollout: "r_1", Action: api.ActionApply, Name: "lp_x", Level: 1, Bundle: strings.Repeat("ab", 32), Size: 100}
	named := api.DesiredState{ETag: "1", Patches: []api.DesiredPatch{p}}
	for i, step := range []struct {
		d       api.DesiredState
		wantErr bool
		reports int
	}{
		{named, true, 0},                        // 404: resync first
		{api.DesiredState{ETag: "2"}, false, 0}, // the server moved on: nothing to report
		{named, true, 0},                        // named again: a fresh 404 resyncs again
		{named, false, 1},                       // still named after a resync: a failure
	} {
		_, err := a.reconcile(ctx, step.d)
		if (err != nil) != step.wantErr || len(a.st.Pending) != step.reports {
			t.Fatalf("step %d: reconcile = %v with %d reports, want error %v and %d reports", i, err, len(a.st.Pending), step.wantErr, step.reports)
		}
	}
	if r := a.st.Pending[0]; r.Result != api.ResultFailed || r.Rollout != "r_1" {
		t.Errorf("report = %+v, want apply failed for r_1", r)
	}
}
