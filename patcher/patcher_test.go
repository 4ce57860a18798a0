package patcher

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/klp"
)

func TestApplyRevert(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	var steps []string
	res, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, nil), ApplyOptions{Progress: func(e Event) { steps = append(steps, e.Step) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != "lp_a" || res.Record == nil || !res.Record.Signed || res.Record.Manifest.Level != 1 {
		t.Errorf("Apply = %+v", res)
	}
	if !slices.Contains(steps, "load") || steps[len(steps)-1] != "done" {
		t.Errorf("progress steps = %v, want load ... done", steps)
	}
	st, err := rt.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Patches) != 1 || st.Patches[0].Record == nil || st.Effective.PatchedBy != "lp_a" {
		t.Fatalf("Status after apply = %+v", st)
	}
	if want := "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-16)"; st.Effective.Version != want {
		t.Errorf("effective version = %q, want %q", st.Effective.Version, want)
	}

	// Applying the same bundle again is a no-op success.
	again, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, nil), ApplyOptions{})
	if err != nil || !again.AlreadyApplied {
		t.Errorf("second Apply = %+v, %v; want AlreadyApplied", again, err)
	}
	if k.loads != 1 {
		t.Errorf("module loads = %d, want 1", k.loads)
	}

	if err := rt.Revert(ctx, "lp_a", RevertOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := loadedPatches(t, k); len(got) != 0 {
		t.Errorf("patches after revert = %v, want none", got)
	}
	if k.modules["lp_a"] {
		t.Error("module lp_a still loaded after revert")
	}
	if recs, _ := rt.Records(); len(recs) != 0 {
		t.Errorf("records after revert = %v, want none", recs)
	}
	if err := rt.Revert(ctx, "lp_a", RevertOptions{}); !errors.Is(err, klp.ErrNoPatch) {
		t.Errorf("Revert(not loaded) err = %v, want ErrNoPatch", err)
	}
}

func TestApplyRefuses(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	otherKey := newFixture(t)

	tampered := f.bundle("lp_t", 1, true, nil)
	b, _ := os.ReadFile(tampered)
	b[len(b)-100] ^= 0xff
	os.WriteFile(tampered, b, 0o644)

	truncated := f.bundle("lp_tr", 1, true, nil)
	b, _ = os.ReadFile(truncated)
	os.WriteFile(truncated, b[:len(b)/2], 0o644)

	garbage := filepath.Join(f.dir, "garbage")
	os.WriteFile(garbage, []byte("definitely not a bundle"), 0o644)

	tests := []struct {
		name, path string
		unsigned   bool
		want       string
	}{
		{"tampered", tampered, false, "digest"},
		{"truncated", truncated, false, "truncated"},
		{"garbage", garbage, false, "bundle"},
		{"wrong key", otherKey.bundle("lp_k", 1, true, nil), false, "key"},
		{"other kernel", f.bundle("lp_o", 1, true, func(m *bundle.Manifest) { m.Kernel.Release = "6.1.0-55-amd64" }), false, "6.1.0-55-amd64"},
		{"other build", f.bundle("lp_b", 1, true, func(m *bundle.Manifest) { m.Kernel.BuildID = "0badbeef" }), false, "build ID is 01020304"},
		{"bare ko without flag", f.ko("lp_bare", "6.1.0-56-amd64", true), false, "--allow-unsigned"},
		{"ko for other kernel", f.ko("lp_old", "6.1.0-55-amd64", true), true, "built for kernel 6.1.0-55-amd64"},
		{"not a livepatch", f.ko("plain", "6.1.0-56-amd64", false), true, "not a live patch"},
	}
	// The fake kernel has no build ID note; give it one so "other build" is checked.
	k.tr.Write("sys/kernel/notes", string(gnuNote([]byte{1, 2, 3, 4})))
	for _, tt := range tests {
		_, err := rt.Apply(ctx, tt.path, ApplyOptions{AllowUnsigned: tt.unsigned})
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: Apply err = %v, want ErrRefused", tt.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Apply err = %q, want it to mention %q", tt.name, err, tt.want)
		}
	}
	if k.loads != 0 {
		t.Errorf("refused applies loaded %d modules, want 0", k.loads)
	}
}

func gnuNote(id []byte) []byte {
	b := []byte{4, 0, 0, 0, byte(len(id)), 0, 0, 0, 3, 0, 0, 0, 'G', 'N', 'U', 0}
	return append(b, id...)
}

func TestApplyUnsignedKo(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	res, err := rt.Apply(ctx, f.ko("lp_bare", "6.1.0-56-amd64", true), ApplyOptions{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Signed || res.Record.Manifest != nil {
		t.Errorf("record of a bare ko = %+v, want unsigned without manifest", res.Record)
	}
}

func TestCumulativeReplace(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	if _, err := rt.Apply(ctx, f.bundle("lp_v1", 1, true, nil), ApplyOptions{Persist: true}); err != nil {
		t.Fatal(err)
	}
	res, err := rt.Apply(ctx, f.bundle("lp_cumul_v2", 2, true, nil), ApplyOptions{Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Replaced, []string{"lp_v1"}) {
		t.Errorf("Replaced = %v, want [lp_v1]", res.Replaced)
	}
	if k.modules["lp_v1"] {
		t.Error("replaced module lp_v1 still loaded")
	}
	stored, _ := rt.StoredPatches()
	if len(stored) != 1 || stored[0].Name != "lp_cumul_v2" {
		t.Errorf("stored after replace = %+v, want only lp_cumul_v2", stored)
	}
	u, err := rt.Uname(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.PackageVersion != "6.1.192-4" || u.PatchedBy != "lp_cumul_v2" || u.Nodename != "web-1" {
		t.Errorf("Uname = %+v, want package 6.1.192-4 by lp_cumul_v2", u)
	}
}

func TestStallReverts(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	k.stall["lp_stall"] = true
	k.tr.AddTask(42, "stent_blocker", klp.StateUnpatched, "stent_blocker_wait+0x1c/0x40 [stent_blocker]")
	_, err := rt.Apply(ctx, f.bundle("lp_stall", 1, true, nil), ApplyOptions{Timeout: 100 * time.Millisecond})
	var se *StallError
	if !errors.As(err, &se) {
		t.Fatalf("Apply err = %v, want StallError", err)
	}
	if !se.Reverted || len(se.Blockers) != 1 || se.Blockers[0].Comm != "stent_blocker" {
		t.Errorf("StallError = %+v, want reverted with blocker stent_blocker", se)
	}
	if got := loadedPatches(t, k); len(got) != 0 || k.modules["lp_stall"] {
		t.Errorf("after stall: patches %v, module loaded %v; want nothing", got, k.modules["lp_stall"])
	}
	if recs, _ := rt.Records(); len(recs) != 0 {
		t.Errorf("records after stall = %v, want none", recs)
	}
}

func TestStallForce(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	k.stall["lp_force"] = true
	// The fake kernel ends the transition when force is written.
	go func() {
		for i := 0; i < 400; i++ {
			time.Sleep(5 * time.Millisecond)
			if k.tr.Read("sys/kernel/livepatch/lp_force/force") == "1" {
				k.tr.Write("sys/kernel/livepatch/lp_force/transition", "0")
				return
			}
		}
	}()
	res, err := rt.Apply(ctx, f.bundle("lp_force", 1, true, nil), ApplyOptions{Timeout: 50 * time.Millisecond, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Forced {
		t.Error("Apply with Force on a stall: Forced = false")
	}
	// Since Linux 5.x a forced patching transition pins only the patches it
	// replaces; the forced patch itself can still be reverted.
	if err := rt.Revert(ctx, "lp_force", RevertOptions{}); err != nil {
		t.Errorf("Revert(forced patch) = %v, want success", err)
	}
}

func TestLoadFailureLeavesNothing(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	k.failLoad = errors.New("EINVAL: kernel refused")
	if _, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, nil), ApplyOptions{Persist: true}); err == nil {
		t.Fatal("Apply with failing load succeeded")
	}
	if stored, _ := rt.StoredPatches(); len(stored) != 0 {
		t.Errorf("stored after failed load = %+v", stored)
	}
	if g := rt.pendingGuards(); len(g) != 0 {
		t.Errorf("guard markers after failed load = %+v", g)
	}
}

func TestPersistAndCrashGuard(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	if _, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, nil), ApplyOptions{Persist: true}); err != nil {
		t.Fatal(err)
	}
	// Simulate a clean reboot: shutdown hook, new boot id, empty run dir,
	// module gone.
	reboot := func(clean bool) {
		if clean {
			if err := rt.MarkShutdown(); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range loadedPatches(t, k) {
			k.tr.RemovePatch(n)
		}
		k.mu.Lock()
		k.modules = map[string]bool{}
		k.syncModules()
		k.mu.Unlock()
		k.tr.Write("proc/sys/kernel/random/boot_id", time.Now().Format(time.RFC3339Nano))
		os.RemoveAll(rt.cfg.RunDir)
	}
	reboot(true)
	rep, err := rt.LoadPersisted(ctx, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Loaded, []string{"lp_a"}) || len(rep.Quarantined) != 0 {
		t.Fatalf("LoadPersisted after clean reboot = %+v, want lp_a loaded", rep)
	}
	// Crash soon after loading: next boot quarantines it.
	reboot(false)
	rep, err = rt.LoadPersisted(ctx, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Loaded) != 0 || len(rep.Quarantined) != 1 || rep.Quarantined[0].Name != "lp_a" {
		t.Fatalf("LoadPersisted after crash = %+v, want lp_a quarantined", rep)
	}
	st, _ := rt.Status(ctx)
	if len(st.Quarantined) != 1 || !strings.Contains(st.Quarantined[0].Reason, "went down") {
		t.Errorf("status quarantine = %+v", st.Quarantined)
	}
	// Confirmed after the guard window: a crash later does not quarantine.
	q := rt.cfg.GuardWindow
	rt.now = func() time.Time { return time.Now().Add(q + time.Minute) }
	os.Remove(filepath.Join(rt.cfg.StateDir, "quarantine", "lp_a.json"))
	reboot(false)
	if rep, _ = rt.LoadPersisted(ctx, ApplyOptions{}); len(rep.Loaded) != 1 {
		t.Fatalf("LoadPersisted after lifting quarantine = %+v", rep)
	}
	rt.now = func() time.Time { return time.Now().Add(2*q + 2*time.Minute) }
	if done, err := rt.Confirm(); err != nil || !slices.Equal(done, []string{"lp_a"}) {
		t.Fatalf("Confirm = %v, %v; want [lp_a]", done, err)
	}
	reboot(false)
	if rep, _ = rt.LoadPersisted(ctx, ApplyOptions{}); len(rep.Loaded) != 1 || len(rep.Quarantined) != 0 {
		t.Errorf("LoadPersisted after confirmed crash = %+v, want loaded", rep)
	}
}

func TestForcedCumulativePinsReplaced(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	if _, err := rt.Apply(ctx, f.bundle("lp_v1", 1, true, nil), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	k.stall["lp_cumul_v2"] = true
	go func() {
		for i := 0; i < 400; i++ {
			time.Sleep(5 * time.Millisecond)
			if k.tr.Read("sys/kernel/livepatch/lp_cumul_v2/force") == "1" {
				k.mu.Lock()
				k.tr.Write("sys/kernel/livepatch/lp_v1/enabled", "0")
				k.tr.Write("sys/kernel/livepatch/lp_cumul_v2/transition", "0")
				k.mu.Unlock()
				return
			}
		}
	}()
	res, err := rt.Apply(ctx, f.bundle("lp_cumul_v2", 2, true, nil), ApplyOptions{Timeout: 50 * time.Millisecond, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Forced || !slices.Equal(res.Replaced, []string{"lp_v1"}) || !slices.Equal(res.Pinned, []string{"lp_v1"}) {
		t.Errorf("forced cumulative Apply = %+v, want lp_v1 replaced and pinned", res)
	}
	if !k.modules["lp_v1"] {
		t.Error("stent tried to unload lp_v1, whose module the kernel pins after a forced transition")
	}
}

func TestNamesAreValidated(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	victim := filepath.Join(rt.cfg.StateDir, "victim.json")
	os.MkdirAll(rt.cfg.StateDir, 0o755)
	os.WriteFile(victim, []byte(`{"name":"x"}`), 0o644)
	for _, name := range []string{"../victim", "../../etc/passwd", "", "a/b", strings.Repeat("x", 56)} {
		if err := rt.Revert(ctx, name, RevertOptions{}); err == nil || !strings.Contains(err.Error(), "not a live patch name") {
			t.Errorf("Revert(%q) err = %v, want a name refusal", name, err)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("a revert with a crafted name removed %s", victim)
	}
}

func TestRevertIsNotRmmod(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	k.modules["ext4"] = true
	k.syncModules()
	if err := rt.Revert(ctx, "ext4", RevertOptions{}); !errors.Is(err, klp.ErrNoPatch) {
		t.Errorf("Revert(ext4) err = %v, want ErrNoPatch", err)
	}
	if !k.modules["ext4"] {
		t.Error("Revert unloaded an ordinary module")
	}
}

func TestRefusesDuringAnotherTransition(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	k.mu.Lock()
	k.stall["busy"] = true
	k.tr.AddPatch("busy", true, true, false, 1)
	k.mu.Unlock()
	_, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, nil), ApplyOptions{})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "busy is still in transition") {
		t.Errorf("Apply during another transition: err = %v, want a refusal naming busy", err)
	}
	if k.loads != 0 {
		t.Errorf("loads = %d, want 0", k.loads)
	}
}

func TestPackageVersionChecked(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	b := f.bundle("lp_pv", 1, true, func(m *bundle.Manifest) { m.Kernel.PackageVersion = "6.1.192-1" })
	if _, err := rt.Apply(ctx, b, ApplyOptions{}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "package 6.1.192-1") {
		t.Errorf("Apply(other package version) err = %v, want refusal", err)
	}
}

func TestPersistedFlagMatchesStoredBytes(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	if _, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, nil), ApplyOptions{Persist: true}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Revert(ctx, "lp_a", RevertOptions{KeepPersisted: true}); err != nil {
		t.Fatal(err)
	}
	// A different build of the same name, applied without --persist, is
	// not what the next boot would load: it must not claim to be persisted.
	res, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, func(m *bundle.Manifest) { m.Description = "rebuilt" }), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Persisted {
		t.Error("Apply of a different build reports persisted=true while the stored copy is the old build")
	}
}

func TestCorruptStateIsSkipped(t *testing.T) {
	k, f := newFakeKernel(t), newFixture(t)
	rt := newRuntime(t, k, f)
	if _, err := rt.Apply(ctx, f.bundle("lp_a", 1, true, nil), ApplyOptions{Persist: true}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rt.cfg.RunDir, "applied", "junk.json"), []byte("{not json"), 0o644)
	os.WriteFile(filepath.Join(rt.cfg.StateDir, "patches", "junk.json"), []byte("{not json"), 0o644)
	st, err := rt.Status(ctx)
	if err != nil {
		t.Fatalf("Status with a corrupt record: %v", err)
	}
	if len(st.Patches) != 1 || st.Patches[0].Record == nil {
		t.Errorf("Status patches = %+v, want lp_a with its record", st.Patches)
	}
	if len(st.Stored) != 1 {
		t.Errorf("Stored = %+v, want lp_a only", st.Stored)
	}
}

// TestApplyRefusesUnsafeKeys: a trusted keys folder others may write to
// (or a key file they own) is no trust: apply, which runs as root,
// refuses, names it and loads nothing (issue 12, part 8).
func TestApplyRefusesUnsafeKeys(t *testing.T) {
	for _, tt := range []struct {
		name string
		prep func(f *fixture) string
	}{
		{"world-writable folder", func(f *fixture) string {
			os.Chmod(f.keysDir, 0o777)
			return f.keysDir + " has mode 0777"
		}},
		{"group-writable key", func(f *fixture) string {
			p := filepath.Join(f.keysDir, "test.pub")
			os.Chmod(p, 0o664)
			return p + " has mode 0664"
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, f := newFakeKernel(t), newFixture(t)
			rt := newRuntime(t, k, f)
			path := f.bundle("lp_u", 1, true, nil)
			want := tt.prep(f)
			_, err := rt.Apply(ctx, path, ApplyOptions{})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Apply with unsafe keys = %v, want ErrRefused saying %q", err, want)
			}
			if k.loads != 0 {
				t.Errorf("Apply with unsafe keys loaded %d modules", k.loads)
			}
		})
	}
}
