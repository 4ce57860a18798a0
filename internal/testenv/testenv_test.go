package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestChild is what TestSkipOrFail runs in a child process, with and
// without CI=true: it asks for what no machine has.
func TestChild(t *testing.T) {
	switch os.Getenv("TESTENV_CHILD") {
	case "tools":
		NeedTools(t, "sh", "stent-no-such-tool")
	case "have":
		if HaveTools(t, "stent-no-such-tool") {
			t.Fatal("HaveTools(missing) = true")
		}
		t.Log("ran the rest")
	case "root":
		if os.Geteuid() == 0 {
			t.Skip("root has root")
		}
		NeedRoot(t, "mounting a tmpfs")
	case "":
		t.Skip("run by TestSkipOrFail")
	}
}

func TestSkipOrFail(t *testing.T) {
	for _, tc := range []struct {
		child        string
		local, incid string // what the child's -v output shows
		reason       string
	}{
		{"tools", "--- SKIP", "--- FAIL", "needs stent-no-such-tool on PATH"},
		{"have", "--- PASS", "--- FAIL", ""},
	} {
		for _, ci := range []string{"", "true"} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
			cmd.Env = append(os.Environ(), "TESTENV_CHILD="+tc.child, "CI="+ci)
			out, _ := cmd.CombinedOutput()
			want := tc.local
			if ci == "true" {
				want = tc.incid
			}
			if !strings.Contains(string(out), want) || !strings.Contains(string(out), tc.reason) {
				t.Errorf("%s with CI=%q: output\n%s\nwant %q and %q", tc.child, ci, out, want, tc.reason)
			}
		}
	}
	if os.Geteuid() != 0 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=root", "CI=")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "--- SKIP") || !strings.Contains(string(out), "mounting a tmpfs needs root") {
			t.Errorf("NeedRoot as a user: output\n%s\nwant a skip saying what needs root", out)
		}
	}
}

func TestMissingTools(t *testing.T) {
	if got := MissingTools("sh", "stent-no-such-tool", "ls", "stent-nor-this"); strings.Join(got, ",") != "stent-no-such-tool,stent-nor-this" {
		t.Errorf("MissingTools = %q, want the two missing ones in order", got)
	}
	if got := MissingTools("sh"); got != nil {
		t.Errorf("MissingTools(sh) = %q, want none", got)
	}
}
