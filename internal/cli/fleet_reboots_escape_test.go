package cli

import (
	"strings"
	"testing"

	"github.com/stent-dev/stent/api"
)

// TestRebootViewsEscapeHostText: what hosts send (blockers, fallback
// reasons, kernel names) reaches the operator's terminal escaped, as the
// host and rollout lists do.
func TestRebootViewsEscapeHostText(t *testing.T) {
	const evil = "drain\x1b[2J\u202egnp.exe"
	var b strings.Builder
	printReboots(&b, &api.RebootStatus{Hosts: []api.HostReboot{{Hostname: "web1", State: api.KernelInstalled,
		Kernel: "6.1.0-56-amd64\x1b]0;x\x07", Blockers: []string{evil},
		LastBoot: &api.BootOutcome{To: "6.1.0-57-amd64", Booted: "6.1.0-56-amd64", Result: api.ResultFellBack, Reason: evil}}}}, true)
	printKernelRollouts(&b, []api.KernelRollout{{ID: "kr_1", Release: "6.1.0-57-amd64", State: api.RolloutHalted, Halt: "host web1 fell-back: " + evil}})
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\u202e") {
		t.Errorf("printReboots/printKernelRollouts wrote raw control or bidi characters:\n%q", out)
	}
	if !strings.Contains(out, "drain") || !strings.Contains(out, "fell back from 6.1.0-57-amd64") {
		t.Errorf("escaped output lost the text itself:\n%s", out)
	}
}
