package hostcli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/bundle"
)

func TestKeyGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "signing")
	code, stdout, stderr := execStent(t, "key", "generate", "--out", dir, "--name", "ci")
	if code != 0 {
		t.Fatalf("stent key generate = exit %d: %s", code, stderr)
	}
	priv, pub := filepath.Join(dir, "ci.key"), filepath.Join(dir, "ci.pub")
	k, err := bundle.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"private key: " + priv, "public key:  " + pub, "key id:      " + bundle.KeyIDOf(k).String()} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stent key generate printed %q, want %q in it", stdout, want)
		}
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("stat %s = %v, %v, want mode 0600", priv, fi.Mode(), err)
	}

	before, _ := os.ReadFile(priv)
	code, _, stderr = execStent(t, "key", "generate", "--out", dir, "--name", "ci")
	if code == 0 || !strings.Contains(stderr, "--force") || !strings.Contains(stderr, priv) {
		t.Errorf("stent key generate (exists) = exit %d, %q, want a refusal naming %s and --force", code, stderr, priv)
	}
	if after, _ := os.ReadFile(priv); string(after) != string(before) {
		t.Errorf("stent key generate without --force changed %s", priv)
	}

	code, stdout, stderr = execStent(t, "key", "generate", "--out", dir, "--name", "ci", "--force", "--json")
	var res keyGenerateResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 0 {
		t.Fatalf("stent key generate --force --json = exit %d, %q, %q: %v", code, stdout, stderr, err)
	}
	k2, _ := bundle.LoadPublicKey(pub)
	if res.Private != priv || res.Public != pub || res.KeyID != bundle.KeyIDOf(k2) || k2.Equal(k) {
		t.Errorf("stent key generate --force --json = %+v, want a new key in %s", res, dir)
	}
}

// An existing --out folder others may write to is refused, naming it and
// its mode, and nothing is written there.
func TestKeyGenerateOpenFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	os.Mkdir(dir, 0o755)
	os.Chmod(dir, 0o777)
	code, _, stderr := execStent(t, "key", "generate", "--out", dir, "--name", "ci")
	if code == 0 || !strings.Contains(stderr, dir+" has mode 0777") || !strings.Contains(stderr, "mkdir -m 700") {
		t.Errorf("stent key generate --out (mode 0777) = exit %d, %q; want a refusal naming the folder and its mode", code, stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("stent key generate --out (mode 0777) wrote %v", ents)
	}
}

func TestKeyGenerateDefaultDir(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	if code, _, stderr := execStent(t, "key", "generate"); code != 0 {
		t.Fatalf("stent key generate = exit %d: %s", code, stderr)
	}
	for _, f := range []string{"signing.key", "signing.pub"} {
		if _, err := os.Stat(filepath.Join(cfg, "stent", f)); err != nil {
			t.Errorf("default key file: %v", err)
		}
	}
}

func TestKeyList(t *testing.T) {
	keys := t.TempDir()
	var ids []string
	for _, n := range []string{"a", "b"} {
		kf, err := bundle.GenerateKey(keys, n, false)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(kf.Private)
		ids = append(ids, kf.ID.String())
	}
	code, stdout, stderr := execStent(t, "--keys-dir", keys, "key", "list")
	if code != 0 {
		t.Fatalf("stent key list = exit %d: %s", code, stderr)
	}
	for i, n := range []string{"a.pub", "b.pub"} {
		if !strings.Contains(stdout, ids[i]+"  "+filepath.Join(keys, n)) {
			t.Errorf("stent key list = %q, want %s with %s", stdout, ids[i], n)
		}
	}

	code, stdout, _ = execStent(t, "--keys-dir", keys, "key", "list", "--json")
	var got []keyListEntry
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || code != 0 || len(got) != 2 || got[0].KeyID.String() != ids[0] {
		t.Errorf("stent key list --json = exit %d, %q, want the two keys", code, stdout)
	}

	missing := filepath.Join(keys, "none")
	if code, stdout, _ := execStent(t, "--keys-dir", missing, "key", "list"); code != 0 || !strings.Contains(stdout, "does not exist") {
		t.Errorf("stent key list (no folder) = exit %d, %q", code, stdout)
	}
	if code, stdout, _ := execStent(t, "--keys-dir", missing, "key", "list", "--json"); code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("stent key list --json (no folder) = exit %d, %q, want []", code, stdout)
	}
	bad := filepath.Join(keys, "bad.pub")
	os.WriteFile(bad, []byte("nope"), 0o644)
	if code, _, stderr := execStent(t, "--keys-dir", keys, "key", "list"); code != 1 || !strings.Contains(stderr, bad) {
		t.Errorf("stent key list (bad file) = exit %d, %q, want exit 1 naming %s", code, stderr, bad)
	}
}
