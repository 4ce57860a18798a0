package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/hostcli"
)

// TestBuildBadInput: a command line that cannot work fails with a message
// naming what is wrong, before anything (a signing key) is made.
func TestBuildBadInput(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	t.Setenv("STENT_CACHE", t.TempDir())
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.patch")
	os.WriteFile(garbage, []byte("this is not a diff\n"), 0o644)
	fix := filepath.Join(dir, "fix.patch")
	os.WriteFile(fix, []byte("--- a/fs/x.c\n+++ b/fs/x.c\n@@ -1 +1 @@\n-a\n+b\n"), 0o644)
	out := filepath.Join(dir, "x.bundle")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--kernel", "6.1.0-56-amd64", "--patch", garbage}, "no output file"},
		{[]string{"build", "--patch", garbage, "-o", out}, "no kernel release"},
		{[]string{"build", "--kernel", "6.1.0-56-amd64", "-o", out}, "no fix given"},
		{[]string{"build", "--kernel", "6.1.0-56-amd64", "--patch", filepath.Join(dir, "missing.patch"), "-o", out}, "no such file"},
		{[]string{"build", "--kernel", "6.1.0-56-amd64", "--patch", garbage, "-o", out}, "no file changes found"},
		{[]string{"build", "--kernel", "6.1.0-56-amd64", "--patch", fix, "--cumulative-with", filepath.Join(dir, "old.bundle"), "--no-replace", "-o", out}, "--no-replace"},
	} {
		var stdout, stderr strings.Builder
		code := hostcli.Run(t.Context(), tc.args, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("stent %v: exit %d, stderr %q; want exit 1 mentioning %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	if ents, _ := os.ReadDir(xdg); len(ents) != 0 {
		t.Errorf("a failed command line made files in %s: %v", xdg, ents)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed build wrote the output bundle")
	}
}
