package build

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/kpkg"
)

// The last two steps on their own: the manifest describes the module, and
// with Options.Key the builder signs the bundle (stent build no longer
// signs it itself), which verifies under that key only.
func TestManifestAndSign(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	module := []byte("\x7fELF not really a module, but bytes to sign")
	setup := func(t *testing.T, opts Options) *builder {
		t.Helper()
		opts.Kernel, opts.Patches, opts.Cache = "6.1.0-56-amd64", []string{"CVE-2026-1234.patch"}, t.TempDir()
		b, err := newBuilder(opts)
		if err != nil {
			t.Fatalf("newBuilder = %v", err)
		}
		b.patchData = []byte("--- a/x\n+++ b/x\n")
		b.kernel = &kpkg.Kernel{Release: "6.1.0-56-amd64", PackageVersion: "6.1.192-2"}
		b.buildID = "0123456789abcdef0123456789abcdef01234567"
		b.desc = "test fix"
		b.res.Module = module
		b.res.Funcs = []elfdiff.Func{{Object: "vmlinux", Name: "cmdline_proc_show"}}
		b.makeManifest()
		if err := b.sign(); err != nil {
			t.Fatalf("sign = %v", err)
		}
		return b
	}

	b := setup(t, Options{Key: key, Effective: "6.1.192-3", CVEs: []string{" cve-2026-1234 "}})
	res := b.res
	sum := sha256.Sum256(module)
	m := res.Manifest
	if m.Name != "stent_cve_2026_1234" || m.ModuleSHA256 != hex.EncodeToString(sum[:]) || m.ModuleSize != int64(len(module)) {
		t.Errorf("manifest = %+v, want name stent_cve_2026_1234 and the module's sha256 and size", m)
	}
	if m.Effective == nil || m.Effective.PackageVersion != "6.1.192-3" {
		t.Errorf("manifest effective = %+v, want package version 6.1.192-3", m.Effective)
	}
	if want := bundle.KeyIDOf(key.Public().(ed25519.PublicKey)); res.KeyID != want {
		t.Errorf("KeyID = %s, want %s", res.KeyID, want)
	}
	got, err := bundle.Parse(res.Bundle)
	if err != nil {
		t.Fatalf("bundle.Parse(Result.Bundle) = %v", err)
	}
	if err := got.Verify(bundle.NewKeyring(key.Public().(ed25519.PublicKey))); err != nil {
		t.Errorf("Verify under the signing key = %v", err)
	}
	if err := got.Verify(bundle.NewKeyring(other.Public().(ed25519.PublicKey))); !errors.Is(err, bundle.ErrUnknownKey) {
		t.Errorf("Verify under another key = %v, want ErrUnknownKey", err)
	}
	gm := got.Manifest()
	if gm.ModuleSHA256 != m.ModuleSHA256 || strings.Join(gm.CVEs, ",") != "CVE-2026-1234" || gm.Effective == nil || gm.Effective.PackageVersion != "6.1.192-3" {
		t.Errorf("signed manifest = %+v, want the builder's (CVE-2026-1234, effective 6.1.192-3)", gm)
	}
	if !bytes.Equal(got.Module(), module) {
		t.Error("signed module differs from the built one")
	}

	// Without a key: the manifest only, for the caller to sign.
	b = setup(t, Options{})
	if b.res.Bundle != nil || b.res.KeyID != (bundle.KeyID{}) || b.res.Manifest.Effective != nil {
		t.Errorf("without a key: bundle %d bytes, key %s, effective %+v; want none", len(b.res.Bundle), b.res.KeyID, b.res.Manifest.Effective)
	}
}

// A key that is not an ed25519 private key fails before anything is done.
func TestBuildBadKey(t *testing.T) {
	_, err := Build(t.Context(), Options{Kernel: "6.1.0-56-amd64", Patches: []string{"x.patch"}, Cache: t.TempDir(), Key: ed25519.PrivateKey("short")})
	if err == nil || !strings.Contains(err.Error(), "signing key is 5 bytes") {
		t.Errorf("Build(5-byte key) = %v, want an error naming the key's size", err)
	}
}

// A build that fails after its work folder was made removes the folder when
// the error says everything (a refusal, a patch that does not apply, a
// cancelled build) and keeps it, naming it, for a compiler error; KeepWork
// keeps it always.
func TestFailedBuildWorkFolder(t *testing.T) {
	refused := fmt.Errorf("diff: %w", &elfdiff.RefusedError{Refusals: []elfdiff.Refusal{{Symbol: "x", Rule: elfdiff.RuleDataChanged}}})
	compiler := &MakeError{Args: []string{"fs/proc/cmdline.o"}, Err: errors.New("exit status 2"), Output: "cmdline.c:9: error: no_such_line undeclared\n"}
	for _, c := range []struct {
		name     string
		err      error
		keepWork bool
		kept     bool
	}{
		{"refused", refused, false, false},
		{"does not apply", fmt.Errorf("compile: %w: 1 out of 1 hunk FAILED", ErrPatchDoesNotApply), false, false},
		{"cancelled", context.Canceled, false, false},
		{"compiler error", compiler, false, true},
		{"refused, keep-work", refused, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := newBuilder(Options{Kernel: "6.1.0-56-amd64", Patches: []string{"fix.patch"}, Cache: t.TempDir(), KeepWork: c.keepWork})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.makeWorkDir(); err != nil {
				t.Fatal(err)
			}
			work := b.work
			got := b.failed(c.err)
			if !errors.Is(got, c.err) {
				t.Errorf("failed(%v) = %v, does not wrap it", c.err, got)
			}
			_, statErr := os.Stat(work)
			if kept := statErr == nil; kept != c.kept {
				t.Fatalf("work folder kept = %v, want %v (err %v)", kept, c.kept, got)
			}
			if c.kept && !strings.Contains(got.Error(), "work folder kept: "+work) {
				t.Errorf("error %q does not name the kept folder", got)
			}
			if !c.kept && (got.Error() != c.err.Error() || b.res.WorkDir != "") {
				t.Errorf("error %q, WorkDir %q: want the error unchanged and no work folder", got, b.res.WorkDir)
			}
		})
	}
}
