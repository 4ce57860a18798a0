package factory

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/vmtest"
)

// TestRunReal: the worker with everything real but the fleet (hosts that
// only send inventories): Debian's 6.1.192-3 upload over 6.1.192-2 from the
// real linux-source packages, the real builder for 6.1.0-56-amd64 (at
// 6.1.192-2), the QEMU smoke test on that kernel, the factory key, a real
// stent-server whose policy rolls live patches out unattended. It prints
// each step's time.
func TestRunReal(t *testing.T) {
	vmtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	c, enroll := testServer(t)
	enroll("web-1", "6.1.0-56-amd64", "6.1.192-2")
	enroll("web-2", "6.1.0-56-amd64", "6.1.192-2")
	if _, err := c.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "unattended": ["apply-livepatch"]}`}); err != nil {
		t.Fatal(err)
	}
	kf, err := bundle.GenerateKey(filepath.Join(t.TempDir(), "keys"), "factory", false)
	if err != nil {
		t.Fatal(err)
	}
	key, err := bundle.LoadPrivateKey(kf.Private)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(kf.Public)
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	w := &Worker{Client: c, Key: key, Options: Options{Progress: testWriter{t}},
		Smoke: func(ctx context.Context, kernel string, b []byte) error {
			// The fix's function is in the nfsd module: it is loaded
			// before the patch is applied, and must still be there after.
			return Smoke(ctx, kernel, b, SmokeOptions{PublicKey: pub, LogDir: logDir, Progress: testWriter{t},
				Check: "grep -q '^nfsd ' /proc/modules"})
		}}
	start := time.Now()
	rep, err := w.Run(ctx, "6.1.192-2", "6.1.192-3")
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	if len(rep.Jobs) != 1 {
		t.Fatalf("Run jobs = %+v, want one for 6.1.0-56-amd64", rep.Jobs)
	}
	j := rep.Jobs[0]
	for _, s := range j.Steps {
		t.Logf("step %-10s %6.1fs", s.Name, s.Duration.Seconds())
	}
	t.Logf("upload to rollout: %.1fs", total.Seconds())
	if j.State != api.JobRolledOut || j.Rollout == "" || !slices.Equal(j.CVEs, []string{"CVE-2026-99362"}) || j.KeyID != kf.ID.String() {
		t.Fatalf("job = %+v, want rolled out with CVE-2026-99362, signed by %s", j, kf.ID)
	}
	if !slices.ContainsFunc(j.Steps, func(s api.FactoryStep) bool { return s.Name == "smoke" }) {
		t.Errorf("job steps %+v lack the smoke test", j.Steps)
	}
	bs, err := c.Bundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].SHA256 != j.Bundle || !strings.HasPrefix(bs[0].Name, "stent_f_6_1_192_3") {
		t.Errorf("server bundles = %+v, want the job's", bs)
	}
	_ = ed25519.PublicKeySize
}
