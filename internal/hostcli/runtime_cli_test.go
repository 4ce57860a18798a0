package hostcli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/fakesys"
)

// run runs the CLI in-process against a fake root.
func runCLI(t *testing.T, root string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	state := filepath.Join(root, "var/lib/stent")
	full := append([]string{"--root", root, "--state-dir", state, "--run-dir", filepath.Join(root, "run/stent"), "--keys-dir", filepath.Join(root, "etc/stent/keys")}, args...)
	code = Run(context.Background(), full, &out, &errb)
	return out.String(), errb.String(), code
}

func TestStatusOnFakeKernel(t *testing.T) {
	tr := fakesys.NewTree(t, fakesys.New)
	tr.Write("proc/sys/kernel/tainted", "45056\n") // K, E, O
	tr.AddPatch("lp_cve", true, true, true, 1, fakesys.Func{Object: "vmlinux", Name: "cmdline_proc_show"})
	tr.AddTask(99, "kworker/0:1", 0, "schedule+0x60/0xe0", "cmdline_proc_show+0x10/0x30")

	out, errs, code := runCLI(t, tr.Root, "status")
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, errs)
	}
	for _, want := range []string{"6.1.0-56-amd64 (package 6.1.192-2", "Debian GNU/Linux 12", "supported", "OEK", "lp_cve", "in transition", "cumulative", "kworker/0:1", "cmdline_proc_show+0x10/0x30"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	out, _, code = runCLI(t, tr.Root, "status", "--json")
	var st struct {
		Kernel struct {
			Release        string
			PackageVersion string `json:"package_version"`
		}
		Patches []struct {
			Name    string
			Replace *bool
		}
		Transitions []struct {
			Patch    string
			Blockers []struct {
				PID  int
				Comm string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, out)
	}
	if st.Kernel.PackageVersion != "6.1.192-2" || len(st.Patches) != 1 || st.Patches[0].Replace == nil || !*st.Patches[0].Replace ||
		len(st.Transitions) != 1 || len(st.Transitions[0].Blockers) != 1 || st.Transitions[0].Blockers[0].PID != 99 {
		t.Errorf("status --json = %+v", st)
	}
}

func TestUnameWithoutPatches(t *testing.T) {
	tr := fakesys.NewTree(t, fakesys.V61)
	for args, want := range map[string]string{
		"uname -r": "6.1.0-56-amd64\n",
		"uname -v": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)\n",
		"uname":    "Linux\n",
	} {
		out, errs, code := runCLI(t, tr.Root, strings.Fields(args)...)
		if code != 0 || out != want {
			t.Errorf("%s = %q (exit %d, %s), want %q", args, out, code, errs, want)
		}
	}
	out, _, _ := runCLI(t, tr.Root, "uname", "-a")
	if !strings.HasPrefix(out, "Linux web-1 6.1.0-56-amd64 #1 SMP") {
		t.Errorf("uname -a = %q", out)
	}
}

func TestApplyExitCodes(t *testing.T) {
	tr := fakesys.NewTree(t, fakesys.V61)
	garbage := filepath.Join(t.TempDir(), "x.bundle")
	os.WriteFile(garbage, []byte("garbage"), 0o644)
	_, errs, code := runCLI(t, tr.Root, "apply", garbage)
	if code != 2 || !strings.Contains(errs, "refused") {
		t.Errorf("apply garbage: exit %d, stderr %q; want exit 2 refused", code, errs)
	}
	_, errs, code = runCLI(t, tr.Root, "apply", filepath.Join(t.TempDir(), "missing"))
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("apply missing file: exit %d, stderr %q", code, errs)
	}
	_, errs, code = runCLI(t, tr.Root, "revert", "nothing_here")
	if code != 1 || !strings.Contains(errs, "no such live patch") {
		t.Errorf("revert unknown: exit %d, stderr %q", code, errs)
	}
}
