package cli

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/policy"
)

// writeTestBundle signs a live patch bundle for kernel release/version
// fixing cves with key, and writes it to path.
func writeTestBundle(t *testing.T, path string, key ed25519.PrivateKey, name, release, version string, cves ...string) {
	t.Helper()
	m := &bundle.Manifest{
		FormatVersion: bundle.FormatVersion,
		Name:          name,
		Kernel:        bundle.Kernel{Release: release, PackageVersion: version},
		Level:         1,
		Replace:       true,
		CVEs:          cves,
		Functions:     []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Description:   "test live patch",
		Created:       time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC),
	}
	var buf bytes.Buffer
	if err := bundle.Create(&buf, m, []byte("\x7fELF not a real module, never loaded"), key); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testSigningKey makes a publisher key in its own folder, which then
// serves as --keys-dir (LoadKeyring reads only the *.pub there).
func testSigningKey(t *testing.T) (keysDir string, key ed25519.PrivateKey) {
	t.Helper()
	keysDir = filepath.Join(t.TempDir(), "keys")
	kf, err := bundle.GenerateKey(keysDir, "publisher", false)
	if err != nil {
		t.Fatal(err)
	}
	if key, err = bundle.LoadPrivateKey(kf.Private); err != nil {
		t.Fatal(err)
	}
	return keysDir, key
}

// --feed livepatch=DIR of signed bundles plans the live patch, as the
// same patch's manifest does (TestPlanCommand).
func TestPlanLivePatchBundles(t *testing.T) {
	keysDir, key := testSigningKey(t)
	dir := filepath.Join(t.TempDir(), "bundles")
	writeTestBundle(t, filepath.Join(dir, "stent_lp_54.bundle"), key, "stent_lp_54", "6.1.0-54-amd64", "6.1.190-1", "CVE-2026-99228")
	// A bundle for another kernel, under the other common file name.
	writeTestBundle(t, filepath.Join(dir, "stent_lp_55.stb"), key, "stent_lp_55", "6.1.0-55-amd64", "6.1.191-1", "CVE-2026-99228")

	feeds := func(lp string) []string {
		args := feedArgs()
		for i, a := range args {
			if strings.HasPrefix(a, "livepatch=") {
				args[i] = "livepatch=" + lp
			}
		}
		return args
	}
	args := append([]string{"--keys-dir", keysDir, "plan", "--json", "--inventory", filepath.Join(policyData, "fleet", "web2.json")}, feeds(dir)...)
	code, stdout, stderr := execStent(t, args...)
	if code != 0 {
		t.Fatalf("stent plan --feed livepatch=%s = exit %d: %s", dir, code, stderr)
	}
	var fp policy.FleetPlan
	if err := json.Unmarshal([]byte(stdout), &fp); err != nil {
		t.Fatal(err)
	}
	if len(fp.Hosts) != 1 || len(fp.Hosts[0].Actions) == 0 {
		t.Fatalf("plan = %+v", fp.Hosts)
	}
	if a := fp.Hosts[0].Actions[0]; a.Kind != policy.ActApplyLivePatch || a.LivePatch != "stent_lp_54" {
		t.Errorf("web2's first action with a folder of bundles = %s %q, want %s stent_lp_54", a.Kind, a.LivePatch, policy.ActApplyLivePatch)
	}
	var lp *struct{ Records int }
	for _, fi := range fp.Feeds {
		if fi.Kind == "livepatch" {
			lp = &struct{ Records int }{fi.Records}
		}
	}
	if lp == nil || lp.Records != 2 {
		t.Errorf("plan feeds = %+v, want the livepatch feed with 2 records", fp.Feeds)
	}

	// Refused, with the reason: a bundle signed by a key not trusted, a
	// tampered bundle, no trusted keys folder, an empty folder, a folder
	// of files that are neither manifests nor bundles.
	otherKeys, _ := testSigningKey(t)
	tampered := filepath.Join(t.TempDir(), "tampered")
	data, err := os.ReadFile(filepath.Join(dir, "stent_lp_54.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	os.MkdirAll(tampered, 0o755)
	os.WriteFile(filepath.Join(tampered, "x.bundle"), data, 0o644)
	empty := t.TempDir()
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "README.txt"), []byte("bundles go here\n"), 0o644)
	for _, tc := range []struct {
		name, keys, feed, want string
	}{
		{"untrusted key", otherKeys, dir, "stent_lp_54.bundle: unknown signing key: bundle is signed by key"},
		{"tampered", keysDir, tampered, "x.bundle: module digest mismatch"},
		{"no keys folder", filepath.Join(t.TempDir(), "nokeys"), dir, "give the folder of the publishers' *.pub keys with --keys-dir"},
		{"empty folder", keysDir, empty, "no livepatch records found: want live patch manifests (*.json) or signed bundles (*.bundle, *.stb)"},
		{"no manifests", keysDir, other, "no livepatch records found"},
	} {
		args := append([]string{"--keys-dir", tc.keys, "plan", "--inventory", filepath.Join(policyData, "fleet", "web2.json")}, feeds(tc.feed)...)
		code, stdout, stderr := execStent(t, args...)
		if code != 1 || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%s: stent plan = exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.name, code, stdout, stderr, tc.want)
		}
	}
}
