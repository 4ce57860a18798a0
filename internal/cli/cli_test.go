package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stent-dev/stent/internal/hostcli"
)

// runCLI runs the full CLI in-process with the global folders under root.
func runCLI(t *testing.T, root string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	full := append([]string{"--root", root, "--state-dir", filepath.Join(root, "var/lib/stent"), "--run-dir", filepath.Join(root, "run/stent"), "--keys-dir", filepath.Join(root, "etc/stent/keys")}, args...)
	code, stdout, stderr = execStent(t, full...)
	return stdout, stderr, code
}

// execStent runs the full stent command line in-process.
func execStent(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = hostcli.Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestToolCommandsListed: the host binary shows and forwards exactly the
// subcommands this package adds, under the same one-line help.
func TestToolCommandsListed(t *testing.T) {
	env := &Env{}
	got := map[string]string{}
	for _, f := range toolFactories {
		c := f(env)
		got[c.Name()] = c.Short
	}
	want := map[string]string{}
	for _, tc := range hostcli.ToolCommands {
		want[tc.Name] = tc.Short
	}
	for name, short := range got {
		if w, ok := want[name]; !ok {
			t.Errorf("subcommand %q is not in hostcli.ToolCommands: the host binary would not offer it", name)
		} else if w != short {
			t.Errorf("subcommand %q: hostcli.ToolCommands says %q, the command says %q", name, w, short)
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("hostcli.ToolCommands lists %q, which package cli does not implement", name)
		}
	}
}
