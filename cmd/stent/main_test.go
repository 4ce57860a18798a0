package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// goTool finds the go command that runs this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildBoth builds stent and stent-tools into one folder, as installed.
func buildBoth(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	cmd := exec.Command(goTool(t), "build", "-o", dir+"/", "github.com/stent-dev/stent/cmd/stent", "github.com/stent-dev/stent/cmd/stent-tools")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func run(t *testing.T, env []string, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return out.String(), errb.String(), code
}

// TestToolsForwarding: the subcommands linked into stent-tools work through
// stent exactly as through stent-tools itself: the same output, help and
// exit code.
func TestToolsForwarding(t *testing.T) {
	dir := buildBoth(t)
	stent, tools := filepath.Join(dir, "stent"), filepath.Join(dir, "stent-tools")
	env := []string{"STENT_TOOLS="}

	out, _, code := run(t, env, stent, "--help")
	for _, name := range []string{"apply", "agent", "build", "plan", "report", "publish", "fleet", "inventory", "kernel"} {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("stent --help does not list %s:\n%s", name, out)
		}
	}
	if code != 0 {
		t.Errorf("stent --help: exit %d", code)
	}

	for _, args := range [][]string{
		{"build", "--help"},
		{"help", "plan"},
		{"help", "fleet", "status"}, // help on a subcommand of a tool command
		{"__complete", "fleet", ""}, // what completion scripts ask
		{"__completeNoDesc", "--keys-dir", "/k", "plan", "--fe"},        // flags of a tool command
		{"plan", "--feed", "nonsense"},                                  // a usage error: exit code and message are the tool's
		{"--keys-dir", t.TempDir(), "report", "--plan", "/nonexistent"}, // a global flag before the subcommand
		{"fleet", "status", "--server", "https://127.0.0.1:1", "--token", "x", "--json"},
	} {
		wantOut, wantErr, wantCode := run(t, env, tools, args...)
		gotOut, gotErr, gotCode := run(t, env, stent, args...)
		if gotOut != wantOut || gotErr != wantErr || gotCode != wantCode {
			t.Errorf("stent %v: exit %d\n%s%s\nwant what stent-tools prints: exit %d\n%s%s", args, gotCode, gotOut, gotErr, wantCode, wantOut, wantErr)
		}
		if wantOut+wantErr == "" {
			t.Errorf("stent-tools %v printed nothing: the comparison proves nothing", args)
		}
	}
}

// TestToolsIsStent: a "stent-tools" that is the host binary itself (a
// symlink to stent, or STENT_TOOLS naming stent) would hand the command
// over to itself forever; stent says what is wrong instead.
func TestToolsIsStent(t *testing.T) {
	dir := buildBoth(t)
	stent := filepath.Join(dir, "stent")
	for _, tc := range []struct {
		name  string
		env   []string
		setup func(t *testing.T) string // returns the stent to run
	}{
		{"STENT_TOOLS names stent", []string{"STENT_TOOLS=" + stent}, func(*testing.T) string { return stent }},
		{"stent-tools is a symlink to stent", []string{"STENT_TOOLS="}, func(t *testing.T) string {
			d := t.TempDir()
			b, err := os.ReadFile(stent)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "stent"), b, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("stent", filepath.Join(d, "stent-tools")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "stent")
		}},
	} {
		bin := tc.setup(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, bin, "plan", "--help")
		cmd.Env = append(os.Environ(), tc.env...)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		var ee *exec.ExitError
		if timedOut {
			t.Errorf("%s: stent plan --help still running after 20s (running itself in a loop?)", tc.name)
		} else if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "is not stent-tools") {
			t.Errorf("%s: stent plan --help = %v\n%s\nwant exit 1 saying it is not stent-tools", tc.name, err, out)
		}
	}
}

// TestToolsMissing: without stent-tools, its subcommands say what is
// missing and where it was looked for; host commands still work.
func TestToolsMissing(t *testing.T) {
	dir := buildBoth(t)
	alone := filepath.Join(t.TempDir(), "stent")
	if err := os.Rename(filepath.Join(dir, "stent"), alone); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, []string{"STENT_TOOLS="}, alone, "build", "--help")
	if code != 1 || !strings.Contains(errs, "stent-tools") || !strings.Contains(errs, filepath.Dir(alone)) || !strings.Contains(errs, "STENT_TOOLS") {
		t.Errorf("stent build without stent-tools: exit %d, %q; want exit 1 naming stent-tools, where it looked and STENT_TOOLS", code, errs)
	}
	if _, errs, code := run(t, []string{"STENT_TOOLS="}, alone, "help", "plan"); code != 1 || !strings.Contains(errs, "stent-tools") {
		t.Errorf("stent help plan without stent-tools: exit %d, %q; want exit 1 naming stent-tools", code, errs)
	}
	_, errs, code = run(t, []string{"STENT_TOOLS=" + filepath.Join(dir, "nope")}, alone, "plan")
	if code != 1 || !strings.Contains(errs, "STENT_TOOLS="+filepath.Join(dir, "nope")) {
		t.Errorf("stent plan with STENT_TOOLS set wrong: exit %d, %q", code, errs)
	}
	out, _, code := run(t, []string{"STENT_TOOLS=" + filepath.Join(dir, "stent-tools")}, alone, "plan", "--help")
	if code != 0 || !strings.Contains(out, "--inventory") {
		t.Errorf("stent plan --help with STENT_TOOLS: exit %d\n%s", code, out)
	}
	if out, _, code := run(t, nil, alone, "key", "--help"); code != 0 || !strings.Contains(out, "generate") {
		t.Errorf("stent key --help without stent-tools: exit %d\n%s", code, out)
	}
}

// The packages stent must not link are in internal/deptest's table.

// TestToolsPackageLayout: installed as `make install` lays them out
// (/usr/sbin/stent, /usr/lib/stent/stent-tools), stent finds stent-tools.
func TestToolsPackageLayout(t *testing.T) {
	dir := buildBoth(t)
	root := t.TempDir()
	for from, to := range map[string]string{"stent": "usr/sbin/stent", "stent-tools": "usr/lib/stent/stent-tools"} {
		dst := filepath.Join(root, to)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, from), dst); err != nil {
			t.Fatal(err)
		}
	}
	out, errs, code := run(t, []string{"STENT_TOOLS="}, filepath.Join(root, "usr/sbin/stent"), "plan", "--help")
	if code != 0 || !strings.Contains(out, "--inventory") {
		t.Errorf("installed stent plan --help: exit %d\n%s%s", code, out, errs)
	}
}

// TestToolsVersionMismatch: stent-tools from another build than stent
// says so (the two are one program, installed together).
func TestToolsVersionMismatch(t *testing.T) {
	dir := buildBoth(t)
	cmd := exec.Command(goTool(t), "build", "-ldflags", "-X github.com/stent-dev/stent/internal/version.stamped=0.0.1-other", "-o", filepath.Join(dir, "stent-tools"), "github.com/stent-dev/stent/cmd/stent-tools")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, errs, code := run(t, []string{"STENT_TOOLS="}, filepath.Join(dir, "stent"), "plan", "--help")
	if code != 0 || !strings.Contains(errs, "warning") || !strings.Contains(errs, "0.0.1-other") {
		t.Errorf("stent plan --help with a stent-tools of another version: exit %d, stderr %q; want a warning naming both versions", code, errs)
	}
	if _, errs, _ := run(t, []string{"STENT_TOOLS="}, filepath.Join(dir, "stent-tools"), "plan", "--help"); strings.Contains(errs, "warning") {
		t.Errorf("stent-tools run directly warned: %q", errs)
	}
}
