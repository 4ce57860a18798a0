package klp_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/fakesys"
	"github.com/stent-dev/stent/klp"
)

func TestListShapes(t *testing.T) {
	tru, fls := true, false
	two := 2
	tests := []struct {
		shape fakesys.Shape
		want  klp.Patch
	}{
		{fakesys.Old, klp.Patch{Name: "lp", Enabled: true, Controls: []string{"force", "signal"},
			Objects: []klp.Object{{Name: "vmlinux", Funcs: []klp.Func{{Name: "cmdline_proc_show"}}}}}},
		{fakesys.V61, klp.Patch{Name: "lp", Enabled: true, Controls: []string{"force"},
			Objects: []klp.Object{{Name: "vmlinux", Patched: &tru, Funcs: []klp.Func{{Name: "cmdline_proc_show"}}}}}},
		{fakesys.New, klp.Patch{Name: "lp", Enabled: true, Replace: &fls, StackOrder: &two, Controls: []string{"force"},
			Objects: []klp.Object{{Name: "vmlinux", Patched: &tru, Funcs: []klp.Func{{Name: "cmdline_proc_show"}}}}}},
	}
	for _, tt := range tests {
		tr := fakesys.NewTree(t, tt.shape)
		tr.AddPatch("lp", true, false, false, 2, fakesys.Func{Object: "vmlinux", Name: "cmdline_proc_show"})
		got, err := klp.List(tr.Root)
		if err != nil {
			t.Fatalf("shape %d: List: %v", tt.shape, err)
		}
		if diff := cmp.Diff([]klp.Patch{tt.want}, got); diff != "" {
			t.Errorf("shape %d: List() mismatch (-want +got):\n%s", tt.shape, diff)
		}
	}
}

func TestListSortsByStackOrder(t *testing.T) {
	tr := fakesys.NewTree(t, fakesys.New)
	tr.AddPatch("b_first", true, false, false, 1)
	tr.AddPatch("a_second", true, false, true, 2)
	got, err := klp.List(tr.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "b_first" || got[1].Name != "a_second" {
		t.Errorf("List() order = %v, want b_first, a_second", []string{got[0].Name, got[1].Name})
	}
}

func TestNotSupported(t *testing.T) {
	dir := t.TempDir()
	if _, err := klp.List(dir); !errors.Is(err, klp.ErrNotSupported) {
		t.Errorf("List(no sysfs) err = %v, want ErrNotSupported", err)
	}
	tr := fakesys.NewTree(t, fakesys.V61)
	if _, err := klp.Get(tr.Root, "nope"); !errors.Is(err, klp.ErrNoPatch) {
		t.Errorf("Get(missing) err = %v, want ErrNoPatch", err)
	}
}

func TestBlockers(t *testing.T) {
	tr := fakesys.NewTree(t, fakesys.V61)
	tr.AddTask(1, "init", klp.StatePatched)
	tr.AddTask(42, "stent_blocker", klp.StateUnpatched, "msleep_interruptible+0x2d/0x50", "stent_blocker_wait+0x1c/0x40 [stent_blocker]", "kthread+0xe8/0x110")
	tr.AddTask(77, "idle", klp.StateUndefined)
	got, err := klp.Blockers(tr.Root, klp.StatePatched)
	if err != nil {
		t.Fatal(err)
	}
	want := []klp.Task{{PID: 42, TID: 42, Comm: "stent_blocker", State: 0, Stack: []string{
		"msleep_interruptible+0x2d/0x50", "stent_blocker_wait+0x1c/0x40 [stent_blocker]", "kthread+0xe8/0x110"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Blockers() mismatch (-want +got):\n%s", diff)
	}
}

func TestWriteControls(t *testing.T) {
	tr := fakesys.NewTree(t, fakesys.V61)
	tr.AddPatch("lp", true, true, false, 1)
	if err := klp.Disable(tr.Root, "lp"); err != nil {
		t.Fatal(err)
	}
	if got := tr.Read("sys/kernel/livepatch/lp/enabled"); got != "0" {
		t.Errorf("enabled after Disable = %q, want 0", got)
	}
	if err := klp.Signal(tr.Root, "lp"); err == nil {
		t.Error("Signal on a 6.1 kernel (no signal file) succeeded, want an error naming the missing file")
	}
	if err := klp.Force(tr.Root, "gone"); !errors.Is(err, klp.ErrNoPatch) {
		t.Errorf("Force(missing) err = %v, want ErrNoPatch", err)
	}
}
