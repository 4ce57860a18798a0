package klp_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/klp"
)

// testdata/debian-6.1-stall is a copy of the livepatch sysfs and the
// blocking task's /proc files, taken from Debian's 6.1.0-56-amd64 under
// QEMU while stent_lp_stall's transition was blocked by stent_blocker's
// kthread sleeping in the patched function (stent_lp_cmdline_v1 applied
// before it).
const snapshot = "testdata/debian-6.1-stall"

func TestRealSnapshot(t *testing.T) {
	got, err := klp.List(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	tru := true
	want := []klp.Patch{
		{Name: "stent_lp_cmdline_v1", Enabled: true, Controls: []string{"force"},
			Objects: []klp.Object{{Name: "vmlinux", Patched: &tru, Funcs: []klp.Func{{Name: "cmdline_proc_show", Sympos: 1}}}}},
		{Name: "stent_lp_stall", Enabled: true, Transition: true, Controls: []string{"force"},
			Objects: []klp.Object{{Name: "stent_blocker", Patched: &tru, Funcs: []klp.Func{{Name: "stent_blocker_show", Sympos: 1}, {Name: "stent_blocker_wait", Sympos: 1}}}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List(real 6.1 snapshot) mismatch (-want +got):\n%s", diff)
	}
	blockers, err := klp.Blockers(snapshot, klp.TransitionTarget(&got[1]))
	if err != nil {
		t.Fatal(err)
	}
	wantB := []klp.Task{{PID: 112, TID: 112, Comm: "stent_blocker", State: klp.StateUnpatched, Stack: []string{
		"msleep_interruptible+0x32/0x70", "stent_blocker_wait+0x11/0x30 [stent_blocker]", "kthread+0xda/0x100", "ret_from_fork+0x22/0x30"}}}
	if diff := cmp.Diff(wantB, blockers); diff != "" {
		t.Errorf("Blockers(real 6.1 snapshot) mismatch (-want +got):\n%s", diff)
	}
}
