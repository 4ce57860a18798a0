package pkgmgr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// call is one recorded command: its command line (name and arguments
// joined by spaces), what it printed and its exit status.
type call struct {
	cmd            string
	stdout, stderr string
	code           int
}

// fakeRunner replays a recorded command sequence and fails the test on
// any command out of order.
type fakeRunner struct {
	t     *testing.T
	calls []call
	n     int
	envs  [][]string
}

type exitErr int

func (e exitErr) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
func (e exitErr) ExitCode() int { return int(e) }

func (f *fakeRunner) Run(_ context.Context, name string, args []string, env []string) ([]byte, []byte, error) {
	f.t.Helper()
	got := commandLine(name, args)
	if f.n >= len(f.calls) {
		f.t.Fatalf("unexpected command %q after the recorded sequence", got)
	}
	c := f.calls[f.n]
	f.n++
	f.envs = append(f.envs, env)
	if got != c.cmd {
		f.t.Fatalf("command %d = %q, want %q", f.n, got, c.cmd)
	}
	var err error
	if c.code != 0 {
		err = exitErr(c.code)
	}
	return []byte(c.stdout), []byte(c.stderr), err
}

func (f *fakeRunner) done() {
	f.t.Helper()
	if f.n != len(f.calls) {
		f.t.Errorf("ran %d commands, want the %d recorded; next was %q", f.n, len(f.calls), f.calls[f.n].cmd)
	}
}

func testdata(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// fakeBoot makes root/boot with the given files (name to size).
func fakeBoot(t *testing.T, files map[string]int) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	fakeBootInto(t, root, files)
	return root
}

func fakeBootInto(t *testing.T, root string, files map[string]int) {
	t.Helper()
	for n, size := range files {
		if err := os.WriteFile(filepath.Join(root, "boot", n), []byte(strings.Repeat("x", size)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fixedFS reports free bytes per path suffix; /boot and /usr share a
// device unless split.
func fixedFS(bootFree, rootFree uint64, split bool) func(string) (uint64, uint64, error) {
	return func(p string) (uint64, uint64, error) {
		if strings.HasSuffix(p, "/boot") {
			return bootFree, 1, nil
		}
		if split {
			return rootFree, 2, nil
		}
		return bootFree, 1, nil
	}
}
