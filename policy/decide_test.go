package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/vuln"
)

const (
	urgent, notUrgent = true, false
	patch, noPatch    = true, false
	nothing           = bucket(0)
)

// classifyTable states what the planner does for every combination of
// classify's inputs: 7 states x urgent or not x live patch or not x 3
// exception scopes x 3 places of the kernel fix = 252 rows. The expected
// buckets were written from docs/policy.md's flow, not from classify.
var classifyTable = []struct {
	state     vuln.State
	urgent    bool
	patch     bool
	exception exceptScope
	fix       kernelFix
	want      bucket
}{
	{vuln.NotAffected, notUrgent, noPatch, exceptNone, fixNone, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptNone, fixReleased, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptNone, fixInstalled, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptNone, fixNone, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptNone, fixReleased, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptNone, fixInstalled, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptNone, fixNone, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptNone, fixReleased, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptNone, fixInstalled, nothing},
	{vuln.NotAffected, urgent, patch, exceptNone, fixNone, nothing},
	{vuln.NotAffected, urgent, patch, exceptNone, fixReleased, nothing},
	{vuln.NotAffected, urgent, patch, exceptNone, fixInstalled, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptUrgent, fixReleased, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptUrgent, fixInstalled, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptUrgent, fixReleased, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptUrgent, fixInstalled, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptUrgent, fixReleased, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptUrgent, fixInstalled, nothing},
	{vuln.NotAffected, urgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.NotAffected, urgent, patch, exceptUrgent, fixReleased, nothing},
	{vuln.NotAffected, urgent, patch, exceptUrgent, fixInstalled, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.NotAffected, notUrgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptAll, fixNone, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptAll, fixReleased, nothing},
	{vuln.NotAffected, notUrgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.NotAffected, urgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.NotAffected, urgent, patch, exceptAll, fixNone, nothing},
	{vuln.NotAffected, urgent, patch, exceptAll, fixReleased, nothing},
	{vuln.NotAffected, urgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptNone, fixNone, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptNone, fixReleased, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptNone, fixInstalled, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptNone, fixNone, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptNone, fixReleased, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptNone, fixInstalled, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptNone, fixNone, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptNone, fixReleased, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptNone, fixInstalled, nothing},
	{vuln.FixedRunning, urgent, patch, exceptNone, fixNone, nothing},
	{vuln.FixedRunning, urgent, patch, exceptNone, fixReleased, nothing},
	{vuln.FixedRunning, urgent, patch, exceptNone, fixInstalled, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptUrgent, fixReleased, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptUrgent, fixInstalled, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptUrgent, fixReleased, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptUrgent, fixInstalled, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptUrgent, fixReleased, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptUrgent, fixInstalled, nothing},
	{vuln.FixedRunning, urgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.FixedRunning, urgent, patch, exceptUrgent, fixReleased, nothing},
	{vuln.FixedRunning, urgent, patch, exceptUrgent, fixInstalled, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.FixedRunning, notUrgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptAll, fixNone, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptAll, fixReleased, nothing},
	{vuln.FixedRunning, notUrgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.FixedRunning, urgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.FixedRunning, urgent, patch, exceptAll, fixNone, nothing},
	{vuln.FixedRunning, urgent, patch, exceptAll, fixReleased, nothing},
	{vuln.FixedRunning, urgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptNone, fixNone, nothing},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptNone, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptNone, fixInstalled, bReboot},
	{vuln.FixedLivePatch, notUrgent, patch, exceptNone, fixNone, nothing},
	{vuln.FixedLivePatch, notUrgent, patch, exceptNone, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, notUrgent, patch, exceptNone, fixInstalled, bReboot},
	{vuln.FixedLivePatch, urgent, noPatch, exceptNone, fixNone, nothing},
	{vuln.FixedLivePatch, urgent, noPatch, exceptNone, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, urgent, noPatch, exceptNone, fixInstalled, bReboot},
	{vuln.FixedLivePatch, urgent, patch, exceptNone, fixNone, nothing},
	{vuln.FixedLivePatch, urgent, patch, exceptNone, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, urgent, patch, exceptNone, fixInstalled, bReboot},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedLivePatch, notUrgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.FixedLivePatch, notUrgent, patch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, notUrgent, patch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedLivePatch, urgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.FixedLivePatch, urgent, noPatch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, urgent, noPatch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedLivePatch, urgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.FixedLivePatch, urgent, patch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.FixedLivePatch, urgent, patch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.FixedLivePatch, notUrgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.FixedLivePatch, notUrgent, patch, exceptAll, fixNone, nothing},
	{vuln.FixedLivePatch, notUrgent, patch, exceptAll, fixReleased, nothing},
	{vuln.FixedLivePatch, notUrgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.FixedLivePatch, urgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.FixedLivePatch, urgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.FixedLivePatch, urgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.FixedLivePatch, urgent, patch, exceptAll, fixNone, nothing},
	{vuln.FixedLivePatch, urgent, patch, exceptAll, fixReleased, nothing},
	{vuln.FixedLivePatch, urgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptNone, fixNone, bReboot},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptNone, fixReleased, bReboot},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptNone, fixInstalled, bReboot},
	{vuln.FixedInstalled, notUrgent, patch, exceptNone, fixNone, bReboot},
	{vuln.FixedInstalled, notUrgent, patch, exceptNone, fixReleased, bReboot},
	{vuln.FixedInstalled, notUrgent, patch, exceptNone, fixInstalled, bReboot},
	{vuln.FixedInstalled, urgent, noPatch, exceptNone, fixNone, bEmergency},
	{vuln.FixedInstalled, urgent, noPatch, exceptNone, fixReleased, bEmergency},
	{vuln.FixedInstalled, urgent, noPatch, exceptNone, fixInstalled, bEmergency},
	{vuln.FixedInstalled, urgent, patch, exceptNone, fixNone, bApplyPatch | bReboot},
	{vuln.FixedInstalled, urgent, patch, exceptNone, fixReleased, bApplyPatch | bReboot},
	{vuln.FixedInstalled, urgent, patch, exceptNone, fixInstalled, bApplyPatch | bReboot},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptUrgent, fixNone, bReboot},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptUrgent, fixReleased, bReboot},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedInstalled, notUrgent, patch, exceptUrgent, fixNone, bReboot},
	{vuln.FixedInstalled, notUrgent, patch, exceptUrgent, fixReleased, bReboot},
	{vuln.FixedInstalled, notUrgent, patch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedInstalled, urgent, noPatch, exceptUrgent, fixNone, bReboot},
	{vuln.FixedInstalled, urgent, noPatch, exceptUrgent, fixReleased, bReboot},
	{vuln.FixedInstalled, urgent, noPatch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedInstalled, urgent, patch, exceptUrgent, fixNone, bReboot},
	{vuln.FixedInstalled, urgent, patch, exceptUrgent, fixReleased, bReboot},
	{vuln.FixedInstalled, urgent, patch, exceptUrgent, fixInstalled, bReboot},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.FixedInstalled, notUrgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.FixedInstalled, notUrgent, patch, exceptAll, fixNone, nothing},
	{vuln.FixedInstalled, notUrgent, patch, exceptAll, fixReleased, nothing},
	{vuln.FixedInstalled, notUrgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.FixedInstalled, urgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.FixedInstalled, urgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.FixedInstalled, urgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.FixedInstalled, urgent, patch, exceptAll, fixNone, nothing},
	{vuln.FixedInstalled, urgent, patch, exceptAll, fixReleased, nothing},
	{vuln.FixedInstalled, urgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptNone, fixNone, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptNone, fixReleased, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptNone, fixInstalled, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, patch, exceptNone, fixNone, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, patch, exceptNone, fixReleased, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, patch, exceptNone, fixInstalled, bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, noPatch, exceptNone, fixNone, bUpgradeNow | bEmergency},
	{vuln.UpdateNeeded, urgent, noPatch, exceptNone, fixReleased, bUpgradeNow | bEmergency},
	{vuln.UpdateNeeded, urgent, noPatch, exceptNone, fixInstalled, bUpgradeNow | bEmergency},
	{vuln.UpdateNeeded, urgent, patch, exceptNone, fixNone, bApplyPatch | bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, patch, exceptNone, fixReleased, bApplyPatch | bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, patch, exceptNone, fixInstalled, bApplyPatch | bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptUrgent, fixNone, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptUrgent, fixInstalled, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, patch, exceptUrgent, fixNone, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, patch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, patch, exceptUrgent, fixInstalled, bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, noPatch, exceptUrgent, fixNone, bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, noPatch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, noPatch, exceptUrgent, fixInstalled, bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, patch, exceptUrgent, fixNone, bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, patch, exceptUrgent, fixReleased, bUpgrade | bReboot},
	{vuln.UpdateNeeded, urgent, patch, exceptUrgent, fixInstalled, bUpgrade | bReboot},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.UpdateNeeded, notUrgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.UpdateNeeded, notUrgent, patch, exceptAll, fixNone, nothing},
	{vuln.UpdateNeeded, notUrgent, patch, exceptAll, fixReleased, nothing},
	{vuln.UpdateNeeded, notUrgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.UpdateNeeded, urgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.UpdateNeeded, urgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.UpdateNeeded, urgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.UpdateNeeded, urgent, patch, exceptAll, fixNone, nothing},
	{vuln.UpdateNeeded, urgent, patch, exceptAll, fixReleased, nothing},
	{vuln.UpdateNeeded, urgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptNone, fixNone, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptNone, fixReleased, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptNone, fixInstalled, nothing},
	{vuln.NoFix, notUrgent, patch, exceptNone, fixNone, nothing},
	{vuln.NoFix, notUrgent, patch, exceptNone, fixReleased, nothing},
	{vuln.NoFix, notUrgent, patch, exceptNone, fixInstalled, nothing},
	{vuln.NoFix, urgent, noPatch, exceptNone, fixNone, bMitigate},
	{vuln.NoFix, urgent, noPatch, exceptNone, fixReleased, bMitigate},
	{vuln.NoFix, urgent, noPatch, exceptNone, fixInstalled, bMitigate},
	{vuln.NoFix, urgent, patch, exceptNone, fixNone, bApplyPatch},
	{vuln.NoFix, urgent, patch, exceptNone, fixReleased, bApplyPatch},
	{vuln.NoFix, urgent, patch, exceptNone, fixInstalled, bApplyPatch},
	{vuln.NoFix, notUrgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptUrgent, fixReleased, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptUrgent, fixInstalled, nothing},
	{vuln.NoFix, notUrgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.NoFix, notUrgent, patch, exceptUrgent, fixReleased, nothing},
	{vuln.NoFix, notUrgent, patch, exceptUrgent, fixInstalled, nothing},
	{vuln.NoFix, urgent, noPatch, exceptUrgent, fixNone, nothing},
	{vuln.NoFix, urgent, noPatch, exceptUrgent, fixReleased, nothing},
	{vuln.NoFix, urgent, noPatch, exceptUrgent, fixInstalled, nothing},
	{vuln.NoFix, urgent, patch, exceptUrgent, fixNone, nothing},
	{vuln.NoFix, urgent, patch, exceptUrgent, fixReleased, nothing},
	{vuln.NoFix, urgent, patch, exceptUrgent, fixInstalled, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.NoFix, notUrgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.NoFix, notUrgent, patch, exceptAll, fixNone, nothing},
	{vuln.NoFix, notUrgent, patch, exceptAll, fixReleased, nothing},
	{vuln.NoFix, notUrgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.NoFix, urgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.NoFix, urgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.NoFix, urgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.NoFix, urgent, patch, exceptAll, fixNone, nothing},
	{vuln.NoFix, urgent, patch, exceptAll, fixReleased, nothing},
	{vuln.NoFix, urgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.Unknown, notUrgent, noPatch, exceptNone, fixNone, bReview},
	{vuln.Unknown, notUrgent, noPatch, exceptNone, fixReleased, bReview},
	{vuln.Unknown, notUrgent, noPatch, exceptNone, fixInstalled, bReview},
	{vuln.Unknown, notUrgent, patch, exceptNone, fixNone, bReview | bPatchNote},
	{vuln.Unknown, notUrgent, patch, exceptNone, fixReleased, bReview | bPatchNote},
	{vuln.Unknown, notUrgent, patch, exceptNone, fixInstalled, bReview | bPatchNote},
	{vuln.Unknown, urgent, noPatch, exceptNone, fixNone, bReview},
	{vuln.Unknown, urgent, noPatch, exceptNone, fixReleased, bReview},
	{vuln.Unknown, urgent, noPatch, exceptNone, fixInstalled, bReview},
	{vuln.Unknown, urgent, patch, exceptNone, fixNone, bApplyPatch},
	{vuln.Unknown, urgent, patch, exceptNone, fixReleased, bApplyPatch},
	{vuln.Unknown, urgent, patch, exceptNone, fixInstalled, bApplyPatch},
	{vuln.Unknown, notUrgent, noPatch, exceptUrgent, fixNone, bReview},
	{vuln.Unknown, notUrgent, noPatch, exceptUrgent, fixReleased, bReview},
	{vuln.Unknown, notUrgent, noPatch, exceptUrgent, fixInstalled, bReview},
	{vuln.Unknown, notUrgent, patch, exceptUrgent, fixNone, bReview | bPatchNote},
	{vuln.Unknown, notUrgent, patch, exceptUrgent, fixReleased, bReview | bPatchNote},
	{vuln.Unknown, notUrgent, patch, exceptUrgent, fixInstalled, bReview | bPatchNote},
	{vuln.Unknown, urgent, noPatch, exceptUrgent, fixNone, bReview},
	{vuln.Unknown, urgent, noPatch, exceptUrgent, fixReleased, bReview},
	{vuln.Unknown, urgent, noPatch, exceptUrgent, fixInstalled, bReview},
	{vuln.Unknown, urgent, patch, exceptUrgent, fixNone, bReview | bPatchNote},
	{vuln.Unknown, urgent, patch, exceptUrgent, fixReleased, bReview | bPatchNote},
	{vuln.Unknown, urgent, patch, exceptUrgent, fixInstalled, bReview | bPatchNote},
	{vuln.Unknown, notUrgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.Unknown, notUrgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.Unknown, notUrgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.Unknown, notUrgent, patch, exceptAll, fixNone, nothing},
	{vuln.Unknown, notUrgent, patch, exceptAll, fixReleased, nothing},
	{vuln.Unknown, notUrgent, patch, exceptAll, fixInstalled, nothing},
	{vuln.Unknown, urgent, noPatch, exceptAll, fixNone, nothing},
	{vuln.Unknown, urgent, noPatch, exceptAll, fixReleased, nothing},
	{vuln.Unknown, urgent, noPatch, exceptAll, fixInstalled, nothing},
	{vuln.Unknown, urgent, patch, exceptAll, fixNone, nothing},
	{vuln.Unknown, urgent, patch, exceptAll, fixReleased, nothing},
	{vuln.Unknown, urgent, patch, exceptAll, fixInstalled, nothing},
}

func TestClassifyEveryCase(t *testing.T) {
	rows := map[findingCase]bool{}
	for _, tt := range classifyTable {
		c := findingCase{State: tt.state, Urgent: tt.urgent, Patch: tt.patch, Exception: tt.exception, Fix: tt.fix}
		if rows[c] {
			t.Errorf("classifyTable has %+v twice", c)
		}
		rows[c] = true
		if got := classify(c); got != tt.want {
			t.Errorf("classify(%+v) = %v, want %v", c, got, tt.want)
		}
	}
	// The table holds the whole cross product of the inputs, and nothing
	// else: a new state, scope or kind of fix needs its rows.
	n := 0
	for _, s := range vuln.States {
		for _, u := range []bool{notUrgent, urgent} {
			for _, p := range []bool{noPatch, patch} {
				for _, e := range []exceptScope{exceptNone, exceptUrgent, exceptAll} {
					for _, f := range []kernelFix{fixNone, fixReleased, fixInstalled} {
						n++
						if c := (findingCase{State: s, Urgent: u, Patch: p, Exception: e, Fix: f}); !rows[c] {
							t.Errorf("classifyTable has no row for %+v", c)
						}
					}
				}
			}
		}
	}
	if n != len(classifyTable) || n != 252 {
		t.Errorf("classifyTable has %d rows, the inputs %d combinations (want 252)", len(classifyTable), n)
	}
}

// caseOf reads the facts from a finding as classify means them.
func TestCaseOf(t *testing.T) {
	p := Default()
	var urgentRule *Rule
	for i := range p.Rules {
		if p.Rules[i].Kind == KindUrgent {
			urgentRule = &p.Rules[i]
		}
	}
	if urgentRule == nil {
		t.Fatal("the default policy has no urgent rule")
	}
	high := vuln.Severity{Level: vuln.LevelHigh, Score: 7.5, Scored: true}
	low := vuln.Severity{Level: vuln.LevelLow, Score: 3.1, Scored: true}
	tests := []struct {
		name                  string
		f                     vuln.Finding
		rule                  *Rule
		fully, exceptedUrgent bool
		want                  findingCase
	}{
		{"urgent, released fix", vuln.Finding{State: vuln.UpdateNeeded, Severity: high, FixedIn: "6.1.200-1"}, urgentRule, false, false,
			findingCase{State: vuln.UpdateNeeded, Urgent: true, Fix: fixReleased}},
		{"below the urgent score", vuln.Finding{State: vuln.UpdateNeeded, Severity: low, FixedIn: "6.1.200-1"}, urgentRule, false, false,
			findingCase{State: vuln.UpdateNeeded, Fix: fixReleased}},
		{"no urgent rule", vuln.Finding{State: vuln.NoFix, Severity: high}, nil, false, false,
			findingCase{State: vuln.NoFix}},
		{"installed kernel, live patch available", vuln.Finding{State: vuln.FixedInstalled, Severity: high, Kernel: "6.1.0-100-amd64", FixedIn: "6.1.200-1", AvailablePatch: "lp"}, urgentRule, false, false,
			findingCase{State: vuln.FixedInstalled, Urgent: true, Patch: true, Fix: fixInstalled}},
		{"live patched", vuln.Finding{State: vuln.FixedLivePatch, Severity: high, LivePatch: "lp", FixedIn: "6.1.200-1"}, urgentRule, false, false,
			findingCase{State: vuln.FixedLivePatch, Urgent: true, Fix: fixReleased}},
		{"urgent rule excepted", vuln.Finding{State: vuln.Unknown, Severity: high}, urgentRule, false, true,
			findingCase{State: vuln.Unknown, Urgent: true, Exception: exceptUrgent}},
		{"every rule excepted", vuln.Finding{State: vuln.Unknown, Severity: high}, urgentRule, true, true,
			findingCase{State: vuln.Unknown, Urgent: true, Exception: exceptAll}},
	}
	for _, tt := range tests {
		if got := caseOf(&tt.f, tt.rule, tt.fully, tt.exceptedUrgent); got != tt.want {
			t.Errorf("%s: caseOf(%+v) = %+v, want %+v", tt.name, tt.f, got, tt.want)
		}
	}
}

// The second step on its own: buckets become actions, an urgent upgrade
// takes the scheduled one along and an emergency reboot the window's.
func TestActionsFromBuckets(t *testing.T) {
	now := mustTime("2026-11-20T12:00:00Z")
	pl := &planner{policy: Default(), now: now}
	soon, later := mustTime("2026-11-21T00:00:00Z"), mustTime("2026-12-20T00:00:00Z")
	h := vuln.Host{Distro: "debian", Scheme: vuln.SchemeDeb, Newest: vuln.Build{Release: "6.1.0-100-amd64"}}
	type added struct {
		f vuln.Finding
		b bucket
	}
	kinds := func(acts []Action) string {
		var k []string
		for _, a := range acts {
			k = append(k, a.Kind+"("+strings.Join(a.CVEs, ",")+")")
		}
		return strings.Join(k, " ")
	}
	tests := []struct {
		name  string
		add   []added
		want  string
		check func(t *testing.T, acts []Action)
	}{
		{"nothing", nil, "", nil},
		{"urgent upgrade takes the scheduled one and the reboot", []added{
			{vuln.Finding{CVE: "A", FixedIn: "6.1.200-1"}, bUpgradeNow | bEmergency},
			{vuln.Finding{CVE: "B", FixedIn: "6.1.201-1"}, bUpgrade | bReboot},
			{vuln.Finding{CVE: "C", Kernel: "6.1.0-100-amd64"}, bReboot},
		}, "upgrade-package-now(A,B) emergency-reboot(A,B,C)", func(t *testing.T, acts []Action) {
			if a := acts[0]; a.Version != "6.1.201-1" || !a.Deadline.Equal(soon) {
				t.Errorf("upgrade-package-now = %+v, want version 6.1.201-1 by %v", a, soon)
			}
			// The reboot is into what the upgrade installs (it named
			// 6.1.200-1, the urgent CVEs' fix, before B's was folded in).
			if a := acts[1]; a.Kernel != "the kernel of linux-image-amd64 6.1.201-1 or later" {
				t.Errorf("emergency-reboot into %q, want the kernel of linux-image-amd64 6.1.201-1 or later", a.Kernel)
			}
		}},
		{"live patch now, kernel in the window", []added{
			{vuln.Finding{CVE: "A", AvailablePatch: "lp-a", FixedIn: "6.1.200-1"}, bApplyPatch | bUpgrade | bReboot},
			{vuln.Finding{CVE: "B", AvailablePatch: "lp-a", Kernel: "6.1.0-100-amd64"}, bApplyPatch | bReboot},
			{vuln.Finding{CVE: "C", AvailablePatch: "lp-c"}, bApplyPatch},
		}, "apply-livepatch(A,B) apply-livepatch(C) upgrade-package(A) reboot(A,B)", func(t *testing.T, acts []Action) {
			if a := acts[0]; a.LivePatch != "lp-a" || !a.Deadline.Equal(soon) {
				t.Errorf("apply-livepatch = %+v, want lp-a by %v", a, soon)
			}
			if a := acts[3]; !a.Deadline.Equal(later) || a.Kernel != "the kernel of linux-image-amd64 6.1.200-1 or later" {
				t.Errorf("reboot = %+v, want into linux-image-amd64 6.1.200-1 by %v", a, later)
			}
		}},
		{"mitigate and review", []added{
			{vuln.Finding{CVE: "A"}, bMitigate},
			{vuln.Finding{CVE: "B", AvailablePatch: "lp-b"}, bReview | bPatchNote},
			{vuln.Finding{CVE: "C"}, bReview},
		}, "mitigate(A) review-unknown(B,C)", func(t *testing.T, acts []Action) {
			if n := acts[1].Note; !strings.Contains(n, "name 1 of them") || !strings.Contains(n, "lp-b (B)") {
				t.Errorf("review-unknown note = %q, want it to name lp-b (B)", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newActionSet(h.Scheme)
			for _, a := range tt.add {
				s.add(&a.f, a.b, []string{"r"}, &later, &soon)
			}
			acts := pl.actions(s, nil, "linux-image-amd64", h)
			if got := kinds(acts); got != tt.want {
				t.Fatalf("actions = %s, want %s", got, tt.want)
			}
			for _, a := range acts {
				if !slices.Equal(a.Rules, []string{"r"}) {
					t.Errorf("%s rules = %v, want [r]", a.Kind, a.Rules)
				}
			}
			if tt.check != nil {
				tt.check(t, acts)
			}
		})
	}
	// Past the deadline, each action says so.
	s := newActionSet(h.Scheme)
	s.add(&vuln.Finding{CVE: "A", FixedIn: "6.1.200-1"}, bUpgrade|bReboot, nil, &soon, nil)
	pl.now = soon.Add(time.Hour)
	for _, a := range pl.actions(s, nil, "linux-image-amd64", h) {
		if !strings.HasPrefix(a.Note, "overdue") {
			t.Errorf("%s after its deadline: note %q, want overdue", a.Kind, a.Note)
		}
	}
}
