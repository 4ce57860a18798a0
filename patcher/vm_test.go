package patcher_test

// Real-kernel tests of the runtime: a Debian kernel boots under QEMU and
// the stent binary in its initramfs applies, reverts, replaces and refuses
// live patches built from testdata/kmod against that kernel's headers.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
)

const (
	testABI  = vmtest.DefaultABI // the kernel the guest boots
	otherABI = vmtest.OtherABI   // a second ABI, for "built for another kernel"
)

type artifacts struct {
	dir     string
	key     ed25519.PrivateKey
	pub     []byte
	modules map[string][]byte // name -> .ko bytes for testABI
}

func build(t *testing.T, ctx context.Context, k *kpkg.Kernel, name string) []byte {
	t.Helper()
	p, err := vmtest.BuildModule(ctx, k, name)
	if err != nil {
		t.Fatalf("build %s for %s: %v", name, k.Release, err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (a *artifacts) bundle(t *testing.T, name string, level int64, release string, module []byte, cves ...string) []byte {
	t.Helper()
	m := &bundle.Manifest{FormatVersion: bundle.FormatVersion, Name: name, Level: level, Replace: true,
		Kernel:      bundle.Kernel{Release: release, PackageVersion: "6.1.192-2"},
		CVEs:        cves,
		Functions:   []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Description: "test live patch " + name,
		Effective:   &bundle.Effective{PackageVersion: fmt.Sprintf("6.1.192-2+stent%d", level)},
		Created:     time.Now().UTC().Truncate(time.Second)}
	var buf strings.Builder
	if err := bundle.Create(&buf, m, module, a.key); err != nil {
		t.Fatalf("create bundle %s: %v", name, err)
	}
	return []byte(buf.String())
}

func TestRealKernel(t *testing.T) {
	vmtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := kpkg.Fetch(ctx, testABI, os.Stderr)
	if err != nil {
		t.Fatalf("fetch kernel %s: %v", testABI, err)
	}
	k55, err := kpkg.Fetch(ctx, otherABI, os.Stderr)
	if err != nil {
		t.Fatalf("fetch kernel %s: %v", otherABI, err)
	}

	a := &artifacts{dir: t.TempDir(), modules: map[string][]byte{}}
	kf, err := bundle.GenerateKey(a.dir, "test", false)
	if err != nil {
		t.Fatal(err)
	}
	a.key, _ = bundle.LoadPrivateKey(kf.Private)
	a.pub, _ = os.ReadFile(kf.Public)
	for _, n := range []string{"stent_lp_cmdline_v1", "stent_lp_cmdline_v2", "stent_blocker", "stent_lp_stall", "stent_plain"} {
		a.modules[n] = build(t, ctx, k, n)
	}
	v1For55 := build(t, ctx, k55, "stent_lp_cmdline_v1")

	v1 := a.bundle(t, "stent_lp_cmdline_v1", 1, testABI, a.modules["stent_lp_cmdline_v1"], "CVE-2026-1001")
	v2 := a.bundle(t, "stent_lp_cmdline_v2", 2, testABI, a.modules["stent_lp_cmdline_v2"], "CVE-2026-1001", "CVE-2026-1002")
	tampered := append([]byte(nil), v1...)
	tampered[len(tampered)-200] ^= 0x01
	files := []vmtest.File{
		{Path: "/etc/stent/keys/test.pub", Data: a.pub},
		{Path: "/root/v1.bundle", Data: v1},
		{Path: "/root/v2.bundle", Data: v2},
		{Path: "/root/tampered.bundle", Data: tampered},
		{Path: "/root/v1-for-55.bundle", Data: a.bundle(t, "stent_lp_cmdline_v1", 1, otherABI, v1For55)},
		{Path: "/root/v1-for-55.ko", Data: v1For55},
		{Path: "/root/plain.bundle", Data: a.bundle(t, "stent_plain", 1, testABI, a.modules["stent_plain"])},
		{Path: "/root/stall.bundle", Data: a.bundle(t, "stent_lp_stall", 3, testABI, a.modules["stent_lp_stall"])},
		{Path: "/root/stent_blocker.ko", Data: a.modules["stent_blocker"]},
	}
	disk := filepath.Join(t.TempDir(), "state.img")
	if err := vmtest.NewDisk(ctx, disk, 64); err != nil {
		t.Fatal(err)
	}
	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: k, Files: files, Disk: disk, LogDir: t.TempDir()})
	if err != nil {
		t.Fatalf("boot %s: %v", testABI, err)
	}
	defer vm.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console (last lines):\n%s", vm.ConsoleTail(60))
		}
	})
	g := &guest{t: t, vm: vm, ctx: ctx}

	original := g.ok("cat", "/proc/cmdline")
	if strings.Contains(original, "stent-v") {
		t.Fatalf("cmdline patched before any apply: %q", original)
	}

	t.Run("StatusBeforeApply", func(t *testing.T) {
		st := g.status()
		if !st.Support.Supported || st.Kernel.Release != testABI || st.Kernel.PackageVersion != "6.1.192-2" || st.Kernel.BuildID == "" {
			t.Errorf("status = %+v", st)
		}
		if len(st.Patches) != 0 {
			t.Errorf("patches before apply = %+v", st.Patches)
		}
	})

	t.Run("ApplyChangesBehaviour", func(t *testing.T) {
		out := g.ok("stent", "apply", "/root/v1.bundle")
		if !strings.Contains(out, "applied stent_lp_cmdline_v1") {
			t.Errorf("apply output = %q", out)
		}
		if got := g.ok("cat", "/proc/cmdline"); !strings.HasPrefix(got, "stent-v1 patched") {
			t.Errorf("/proc/cmdline after v1 = %q, want stent-v1 patched", got)
		}
		st := g.status()
		if len(st.Patches) != 1 || st.Patches[0].Name != "stent_lp_cmdline_v1" || !st.Patches[0].Enabled || st.Patches[0].Transition {
			t.Fatalf("status patches = %+v", st.Patches)
		}
		p := st.Patches[0]
		if len(p.Objects) != 1 || p.Objects[0].Name != "vmlinux" || len(p.Objects[0].Funcs) != 1 || p.Objects[0].Funcs[0].Name != "cmdline_proc_show" {
			t.Errorf("patch objects = %+v", p.Objects)
		}
		if !strings.Contains(st.Taint.String, "K") {
			t.Errorf("taint = %+v, want K (live patched)", st.Taint)
		}
		if got := g.ok("stent", "uname", "-v"); !strings.Contains(got, "Debian 6.1.192-2+stent1") {
			t.Errorf("stent uname -v = %q, want the effective package version 6.1.192-2+stent1", got)
		}
		if got := g.ok("stent", "uname", "-r"); strings.TrimSpace(got) != testABI {
			t.Errorf("stent uname -r = %q, want %s (Debian's release names the ABI)", got, testABI)
		}
	})

	t.Run("CumulativeReplace", func(t *testing.T) {
		out := g.ok("stent", "apply", "/root/v2.bundle")
		if !strings.Contains(out, "replaced stent_lp_cmdline_v1") {
			t.Errorf("apply v2 output = %q, want it to name the replaced v1", out)
		}
		if got := g.ok("cat", "/proc/cmdline"); !strings.HasPrefix(got, "stent-v2 patched") {
			t.Errorf("/proc/cmdline after v2 = %q", got)
		}
		mods := g.ok("cat", "/proc/modules")
		if strings.Contains(mods, "stent_lp_cmdline_v1") {
			t.Errorf("v1's module still loaded after the cumulative v2:\n%s", mods)
		}
		if names := g.patchNames(); names != "stent_lp_cmdline_v2" {
			t.Errorf("patches = %s, want only stent_lp_cmdline_v2", names)
		}
	})

	t.Run("RevertRestores", func(t *testing.T) {
		g.ok("stent", "revert", "stent_lp_cmdline_v2")
		if got := g.ok("cat", "/proc/cmdline"); got != original {
			t.Errorf("/proc/cmdline after revert = %q, want %q", got, original)
		}
		if mods := g.ok("cat", "/proc/modules"); strings.Contains(mods, "stent_lp") {
			t.Errorf("live patch modules still loaded after revert:\n%s", mods)
		}
		if got := g.ok("stent", "uname", "-v"); strings.Contains(got, "+stent") {
			t.Errorf("stent uname -v after revert = %q, want the running version", got)
		}
	})

	t.Run("Refusals", func(t *testing.T) {
		modsBefore := g.ok("cat", "/proc/modules")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"/root/v1-for-55.bundle"}, "targets kernel 6.1.0-55-amd64"},
			{[]string{"--allow-unsigned", "/root/v1-for-55.ko"}, "built for kernel 6.1.0-55-amd64"},
			{[]string{"/root/tampered.bundle"}, "digest"},
			{[]string{"/root/plain.bundle"}, "not a live patch"},
			{[]string{"/root/stent_blocker.ko"}, "--allow-unsigned"},
		} {
			r := g.run(append([]string{"stent", "apply"}, tc.args...)...)
			if r.Exit != 2 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("stent apply %v: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, r.Exit, r.Stderr, tc.want)
			}
		}
		if after := g.ok("cat", "/proc/modules"); after != modsBefore {
			t.Errorf("refused applies changed the loaded modules:\nbefore:\n%s\nafter:\n%s", modsBefore, after)
		}
	})

	t.Run("StalledTransitionReverted", func(t *testing.T) {
		g.ok("insmod", "/root/stent_blocker.ko")
		defer g.run("rmmod", "stent_blocker")
		// While the transition is pending, status names the blocking thread.
		// The apply gives up after 20 s. A status taken after that sees the
		// reverse transition, where every task but the blocker is "behind"
		// (CI once sampled first at that moment on a loaded machine), and a
		// status in the first instant sees every task behind (the kernel has
		// not made its first pass yet): poll until only the real blocker is
		// left.
		bg := g.run("sh", "-c", "(stent apply --timeout 20s /root/stall.bundle >/tmp/stall.out 2>/tmp/stall.err; echo $? >/tmp/stall.rc) &")
		if bg.Exit != 0 {
			t.Fatalf("start background apply: %+v", bg)
		}
		settled := func(st statusJSON) bool {
			return len(st.Transitions) == 1 && st.Transitions[0].Patch == "stent_lp_stall" &&
				st.Transitions[0].Target == "patched" && blockedBy(st.Transitions[0].Blockers, "stent_blocker") &&
				len(st.Transitions[0].Blockers) < 10
		}
		var st statusJSON
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond)
			if st = g.status(); settled(st) {
				break
			}
		}
		if !settled(st) {
			t.Errorf("status during the stalled transition = %+v, want stent_lp_stall (target patched) blocked by the stent_blocker kthread alone or nearly", st.Transitions)
		}
		var rc string
		for deadline := time.Now().Add(90 * time.Second); rc == "" && time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond)
			rc = strings.TrimSpace(g.run("cat", "/tmp/stall.rc").Stdout)
		}
		stderr := g.ok("cat", "/tmp/stall.err")
		if rc != "3" {
			t.Fatalf("stalled apply exit = %q, want 3; stderr:\n%s", rc, stderr)
		}
		for _, want := range []string{"did not finish", "reverted", "stent_blocker", "stent_blocker_wait"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stalled apply stderr lacks %q:\n%s", want, stderr)
			}
		}
		if _, err := vm.ReadFile(ctx, "/sys/kernel/livepatch/stent_lp_stall/enabled"); err == nil {
			t.Error("stent_lp_stall still registered after the stalled apply")
		}
		if mods := g.ok("cat", "/proc/modules"); strings.Contains(mods, "stent_lp_stall") {
			t.Errorf("stent_lp_stall module still loaded:\n%s", mods)
		}
	})

	t.Run("ForceEndsStalledTransition", func(t *testing.T) {
		g.ok("insmod", "/root/stent_blocker.ko")
		r := g.run("stent", "apply", "--force", "--timeout", "3s", "/root/stall.bundle")
		if r.Exit != 0 || !strings.Contains(r.Stdout, "was forced") || !strings.Contains(r.Stderr, "WARNING: forcing") {
			t.Fatalf("apply --force: exit %d\nstdout: %s\nstderr: %s", r.Exit, r.Stdout, r.Stderr)
		}
		st := g.status()
		if len(st.Transitions) != 0 || g.patchNames() != "stent_lp_stall" {
			t.Errorf("after --force: transitions %+v, patches %s", st.Transitions, g.patchNames())
		}
		// A forced patching transition pins only replaced patches: this
		// one can be reverted and its module removed.
		g.ok("stent", "revert", "stent_lp_stall")
		if mods := g.ok("cat", "/proc/modules"); strings.Contains(mods, "stent_lp_stall") {
			t.Errorf("stent_lp_stall still loaded after revert:\n%s", mods)
		}
		g.ok("rmmod", "stent_blocker")
	})

	t.Run("PersistAcrossReboot", func(t *testing.T) {
		g.ok("stent", "apply", "--persist", "/root/v1.bundle")
		g.ok("stent", "persist", "mark-shutdown") // what the systemd unit's ExecStop does
		if err := vm.Reboot(ctx); err != nil {
			t.Fatalf("reboot: %v", err)
		}
		if got := g.ok("cat", "/proc/cmdline"); got != original {
			t.Fatalf("/proc/cmdline right after reboot = %q, want unpatched", got)
		}
		out := g.ok("stent", "load-persisted")
		if !strings.Contains(out, "loaded stent_lp_cmdline_v1") {
			t.Errorf("load-persisted output = %q", out)
		}
		if got := g.ok("cat", "/proc/cmdline"); !strings.HasPrefix(got, "stent-v1 patched") {
			t.Errorf("/proc/cmdline after load-persisted = %q", got)
		}
	})

	t.Run("CrashGuardQuarantines", func(t *testing.T) {
		// Loaded at boot and not confirmed: a crash (no clean shutdown
		// recorded) quarantines the patch at the next boot.
		if err := vm.Reboot(ctx); err != nil {
			t.Fatalf("reboot: %v", err)
		}
		out := g.ok("stent", "load-persisted")
		if !strings.Contains(out, "quarantined stent_lp_cmdline_v1") {
			t.Errorf("load-persisted after a crash = %q, want v1 quarantined", out)
		}
		if got := g.ok("cat", "/proc/cmdline"); got != original {
			t.Errorf("/proc/cmdline = %q, want unpatched after quarantine", got)
		}
		if st := g.ok("stent", "status"); !strings.Contains(st, "Quarantined") {
			t.Errorf("status does not show the quarantine:\n%s", st)
		}
	})
}

func blockedBy(ts []taskJSON, comm string) bool {
	for _, t := range ts {
		if t.Comm == comm {
			for _, f := range t.Stack {
				if strings.Contains(f, "stent_blocker_wait") {
					return true
				}
			}
		}
	}
	return false
}

type guest struct {
	t   *testing.T
	vm  *vmtest.VM
	ctx context.Context
}

func (g *guest) run(argv ...string) vmtest.Result {
	g.t.Helper()
	r, err := g.vm.Exec(g.ctx, vmtest.Cmd{Argv: argv, Timeout: 2 * time.Minute})
	if err != nil {
		if _, ok := err.(*vmtest.ExitError); !ok {
			g.t.Fatalf("guest %v: %v", argv, err)
		}
	}
	return r
}

func (g *guest) ok(argv ...string) string {
	g.t.Helper()
	r := g.run(argv...)
	if r.Exit != 0 {
		g.t.Fatalf("guest %v: exit %d\nstdout: %s\nstderr: %s", argv, r.Exit, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

type taskJSON struct {
	PID   int      `json:"pid"`
	Comm  string   `json:"comm"`
	Stack []string `json:"stack"`
}

type statusJSON struct {
	Kernel struct {
		Release        string `json:"release"`
		PackageVersion string `json:"package_version"`
		BuildID        string `json:"build_id"`
	} `json:"kernel"`
	Support struct {
		Supported bool `json:"supported"`
	} `json:"support"`
	Taint struct {
		Value uint64 `json:"value"`
		Flags []struct {
			Letter string `json:"letter"`
		} `json:"flags"`
		String string
	} `json:"taint"`
	Patches []struct {
		Name       string `json:"name"`
		Enabled    bool   `json:"enabled"`
		Transition bool   `json:"transition"`
		Objects    []struct {
			Name  string `json:"name"`
			Funcs []struct {
				Name string `json:"name"`
			} `json:"functions"`
		} `json:"objects"`
	} `json:"patches"`
	Transitions []struct {
		Patch    string     `json:"patch"`
		Target   string     `json:"target"`
		Blockers []taskJSON `json:"blockers"`
	} `json:"transitions"`
}

func (g *guest) status() statusJSON {
	g.t.Helper()
	var st statusJSON
	out := g.ok("stent", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		g.t.Fatalf("status --json: %v\n%s", err, out)
	}
	for _, f := range st.Taint.Flags {
		st.Taint.String += f.Letter
	}
	return st
}

func (g *guest) patchNames() string {
	var names []string
	for _, p := range g.status().Patches {
		names = append(names, p.Name)
	}
	return strings.Join(names, ",")
}
