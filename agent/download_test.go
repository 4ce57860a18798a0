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
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
