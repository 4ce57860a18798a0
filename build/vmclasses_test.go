package build_test

// Guest tests of the classes of fixes issue 10 lists, each built from a
// real kernel file of Debian's 6.1.0-56-amd64, applied with stent apply,
// exercised and reverted.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/vmtest"
)

// classGuest builds the fixes (testdata/patches/<name>.patch), signs them,
// and boots the test kernel with the bundles under /root/<name>.bundle and
// modules (of the image) to load with modprobe.
func classGuest(t *testing.T, ctx context.Context, modules []string, check func(name string, res *build.Result), names ...string) *guest {
	t.Helper()
	k := vmtest.Kernel(t, testKernel)
	key, _, trusted := testKey(t)
	files := []vmtest.File{trusted}
	for _, n := range names {
		res, err := buildFix(t, ctx, n+".patch", key)
		if err != nil {
			t.Fatalf("Build(%s.patch) = %v", n, err)
		}
		check(n, res)
		files = append(files, vmtest.File{Path: "/root/" + n + ".bundle", Data: res.Bundle})
	}
	vm := vmtest.Boot(ctx, t, vmtest.Options{Kernel: k, Files: files, Modules: modules})
	return &guest{t: t, ctx: ctx, vm: vm}
}

func funcNames(res *build.Result) []string {
	var out []string
	for _, f := range res.Funcs {
		out = append(out, f.Name)
	}
	return out
}

// noOops fails the test when the guest's kernel log has a warning or oops.
func (g *guest) noOops() {
	g.t.Helper()
	if got := g.sh("dmesg | grep -E 'BUG|Oops|WARNING|general protection|livepatch: .*(fail|error)' || true"); got != "" {
		g.t.Errorf("kernel log:\n%s", got)
	}
}

// TestStaticTablesInGuest: a fix to mm/compaction.c, whose trace_raw_output_*
// functions (notrace) print through static symbols.N tables, that also moves
// every line of the file: only the changed handler is carried.
func TestStaticTablesInGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	g := classGuest(t, ctx, nil, func(n string, res *build.Result) {
		if got := funcNames(res); len(got) != 1 || got[0] != "sysctl_compaction_handler" {
			t.Fatalf("Build(%s.patch) replaced %v, want only sysctl_compaction_handler", n, got)
		}
	}, "compaction")
	count := func() string {
		return strings.TrimSpace(g.sh("dmesg | grep -c 'compact_memory (stent)' || true"))
	}
	g.sh("stent apply /root/compaction.bundle")
	g.sh("echo 1 > /proc/sys/vm/compact_memory")
	if got := count(); got != "1" {
		t.Errorf("kernel log lines from the patched handler = %s, want 1", got)
	}
	g.sh("stent revert stent_compaction")
	g.sh("echo 1 > /proc/sys/vm/compact_memory")
	if got := count(); got != "1" {
		t.Errorf("kernel log lines after the revert = %s, want still 1", got)
	}
	g.noOops()
}

// TestDynamicDebugInGuest: a fix adding a pr_debug to load_misc_binary, in
// the binfmt_misc module, above fourteen pr_debug calls of other functions
// (whose dynamic debug descriptors hold their line and a __COUNTER__ number,
// both moved): only load_misc_binary is carried, with its new descriptor,
// which dynamic debug's control file then turns on.
func TestDynamicDebugInGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	g := classGuest(t, ctx, []string{"binfmt_misc"}, func(n string, res *build.Result) {
		if got := funcNames(res); len(got) != 1 || got[0] != "load_misc_binary" {
			t.Fatalf("Build(%s.patch) replaced %v, want only load_misc_binary", n, got)
		}
	}, "dyndbg")
	count := func() string {
		return strings.TrimSpace(g.sh("dmesg | grep -c 'stent: load_misc_binary' || true"))
	}
	g.sh("modprobe binfmt_misc && mount -t binfmt_misc none /proc/sys/fs/binfmt_misc")
	g.sh("stent apply /root/dyndbg.bundle")
	g.sh(`echo 'format "stent: " +p' > /proc/dynamic_debug/control`)
	if got := g.sh("grep -c 'stent: load_misc_binary' /proc/dynamic_debug/control || true"); strings.TrimSpace(got) != "1" {
		t.Errorf("dynamic debug control entries for the new pr_debug = %q, want 1", got)
	}
	g.sh("/bin/true")
	if got := count(); got == "0" {
		t.Errorf("no kernel log line from the patched load_misc_binary:\n%s", g.sh("dmesg | tail -5"))
	}
	// The functions below, untouched, still run theirs.
	g.sh(`echo 'module binfmt_misc +p' > /proc/dynamic_debug/control`)
	g.sh("echo ':stent:E::stentx::/bin/cat:' > /proc/sys/fs/binfmt_misc/register")
	if got := g.sh("head -1 /proc/sys/fs/binfmt_misc/stent"); got != "enabled\n" {
		t.Errorf("registered entry = %q, want enabled", got)
	}
	if got := g.sh("dmesg | grep -c 'register: interpreter: {/bin/cat}' || true"); strings.TrimSpace(got) != "1" {
		t.Errorf("create_entry's pr_debug lines = %s, want 1", got)
	}
	g.sh("echo -1 > /proc/sys/fs/binfmt_misc/stent")
	g.sh("stent revert stent_dyndbg")
	before := count()
	g.sh("/bin/true")
	if got := count(); got != before {
		t.Errorf("kernel log lines from load_misc_binary after the revert = %s, want %s", got, before)
	}
	g.noOops()
}

// TestShortJumpsInGuest: a fix to kernel/reboot.c's deferred_cad, whose
// shipped code tail-calls kernel_restart with a 2-byte jmp (this builder's
// copy, with -ffunction-sections, has a 5-byte one), and to mode_show:
// the unpatched source still counts as reproducing the shipped code, both
// are replaced, and /sys/kernel/reboot/mode shows the patched mode_show.
// (Running deferred_cad would restart the guest: it takes ctrl-alt-del on
// a keyboard.)
func TestShortJumpsInGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	g := classGuest(t, ctx, nil, func(n string, res *build.Result) {
		if got := strings.Join(funcNames(res), " "); got != "deferred_cad mode_show" {
			t.Fatalf("Build(%s.patch) replaced %s, want deferred_cad mode_show", n, got)
		}
	}, "reboot")
	before := g.sh("cat /sys/kernel/reboot/mode")
	g.sh("stent apply /root/reboot.bundle")
	if got := g.sh("cat /sys/kernel/reboot/mode"); got != strings.TrimSuffix(before, "\n")+" (stent)\n" {
		t.Errorf("/sys/kernel/reboot/mode with the patch = %q, want %q + (stent)", got, before)
	}
	g.sh("test -d /sys/kernel/livepatch/stent_reboot/vmlinux/deferred_cad,1")
	g.sh("stent revert stent_reboot")
	if got := g.sh("cat /sys/kernel/reboot/mode"); got != before {
		t.Errorf("/sys/kernel/reboot/mode after the revert = %q, want %q", got, before)
	}
	g.noOops()
}

// TestFtraceBusyInGuest: with kernel.ftrace_enabled=0 the kernel refuses a
// live patch with EBUSY; stent apply says it is ftrace, quoting the
// kernel's line, and leaves nothing loaded. With ftrace back on, the same
// bundle applies and reverts.
func TestFtraceBusyInGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	g := classGuest(t, ctx, nil, func(string, *build.Result) {}, "cmdline")
	before := g.sh("cat /proc/cmdline")
	g.sh("echo 0 > /proc/sys/kernel/ftrace_enabled")
	r, err := g.vm.Sh(ctx, "stent apply /root/cmdline.bundle")
	if err == nil {
		t.Fatalf("stent apply with ftrace disabled succeeded:\n%s", r.Stdout)
	}
	msg := r.Stdout + r.Stderr
	t.Logf("stent apply with ftrace disabled: %v\n%s", err, msg)
	for _, want := range []string{"kernel.ftrace_enabled is 0", "sysctl kernel.ftrace_enabled=1", "failed to register ftrace handler for function 'cmdline_proc_show'"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stent apply's error does not say %q", want)
		}
	}
	if strings.Contains(msg, "transition is in progress") {
		t.Errorf("stent apply blames a transition in progress")
	}
	if got := g.sh("ls /sys/kernel/livepatch; grep -c stent_cmdline /proc/modules || true"); strings.TrimSpace(got) != "0" {
		t.Errorf("after the refused load: livepatch entries and stent_cmdline modules = %q, want none", got)
	}
	g.sh("echo 1 > /proc/sys/kernel/ftrace_enabled")
	g.sh("stent apply /root/cmdline.bundle")
	if got := g.sh("cat /proc/cmdline"); got != strings.TrimSuffix(before, "\n")+" stent_patched=1\n" {
		t.Errorf("/proc/cmdline after apply = %q", got)
	}
	g.sh("stent revert stent_cmdline")
	if got := g.sh("cat /proc/cmdline"); got != before {
		t.Errorf("/proc/cmdline after revert = %q, want %q", got, before)
	}
	if got := g.sh("dmesg | grep -E 'BUG|Oops|general protection' || true"); got != "" {
		t.Errorf("kernel log:\n%s", got)
	}
}

// TestNewFunctionAcrossFilesInGuest: a fix adding a global function to
// fs/proc/cmdline.c that fs/proc/version.c's version_proc_show calls: the
// new function is carried in the patch (the running kernel has none), and
// /proc/version prints through it. Without cmdline.c's part the build is
// refused (exit 2), naming the function.
func TestNewFunctionAcrossFilesInGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	g := classGuest(t, ctx, nil, func(n string, res *build.Result) {
		if got := funcNames(res); len(got) != 1 || got[0] != "version_proc_show" {
			t.Fatalf("Build(%s.patch) replaced %v, want only version_proc_show", n, got)
		}
		if !slices.Contains(res.New, "stent_proc_mark") {
			t.Errorf("Build(%s.patch) new functions = %v, want stent_proc_mark", n, res.New)
		}
	}, "newfunc")
	before := g.sh("cat /proc/version")
	g.sh("stent apply /root/newfunc.bundle")
	if got := g.sh("cat /proc/version"); got != before+"stent: version\n" {
		t.Errorf("/proc/version with the patch = %q, want %q + stent: version", got, before)
	}
	g.sh("stent revert stent_newfunc")
	if got := g.sh("cat /proc/version"); got != before {
		t.Errorf("/proc/version after the revert = %q, want %q", got, before)
	}
	g.noOops()

	// The caller's half alone.
	whole, err := os.ReadFile(filepath.Join("testdata", "patches", "newfunc.patch"))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(whole, []byte("--- a/fs/proc/version.c"))
	half := filepath.Join(t.TempDir(), "newfunc_caller.patch")
	if err := os.WriteFile(half, whole[at:], 0o644); err != nil {
		t.Fatal(err)
	}
	buildLock.Lock()
	_, err = build.Build(ctx, build.Options{Kernel: testKernel, Patches: []string{half}})
	buildLock.Unlock()
	var re *elfdiff.RefusedError
	if !errors.As(err, &re) || len(re.Refusals) != 1 || re.Refusals[0].Symbol != "stent_proc_mark" || re.Refusals[0].Rule != elfdiff.RuleUnresolvable {
		t.Fatalf("Build(version.c's half) = %v, want an unresolvable-symbol refusal naming stent_proc_mark", err)
	}
}

// TestModuleCallsNewVmlinuxInGuest: a fix adding stent_status_word to
// fs/proc/cmdline.c (vmlinux; it reads saved_command_line, which vmlinux
// does not export) and calling it from binfmt_misc's bm_status_read (a
// module): the new function is carried in the livepatch module, which
// names vmlinux as an object with no functions so that the kernel writes
// the new function's livepatch relocation, and the module's call resolves
// to it. Checked with binfmt_misc loaded before and after the patch.
func TestModuleCallsNewVmlinuxInGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	g := classGuest(t, ctx, []string{"binfmt_misc"}, func(n string, res *build.Result) {
		if len(res.Funcs) != 1 || res.Funcs[0].Name != "bm_status_read" || res.Funcs[0].Object != "binfmt_misc" {
			t.Fatalf("Build(%s.patch) replaced %+v, want only binfmt_misc's bm_status_read", n, res.Funcs)
		}
		if !slices.Contains(res.New, "stent_status_word") {
			t.Errorf("Build(%s.patch) new functions = %v, want stent_status_word", n, res.New)
		}
		if !bytes.Contains(res.CSource, []byte(`{ .name = NULL, .funcs = funcs_0 }`)) {
			t.Errorf("Build(%s.patch) livepatch.c names no vmlinux object:\n%s", n, res.CSource)
		}
	}, "modcall")
	status := func() string { return g.sh("cat /proc/sys/fs/binfmt_misc/status") }
	const patched = "enabled (stent vmlinux)\n"

	// Loaded before the patch.
	g.sh("modprobe binfmt_misc && mount -t binfmt_misc none /proc/sys/fs/binfmt_misc")
	g.sh("stent apply /root/modcall.bundle")
	if got := status(); got != patched {
		t.Errorf("status with the patch = %q, want %q", got, patched)
	}
	g.sh("echo 0 > /proc/sys/fs/binfmt_misc/status")
	if got := status(); got != "disabled (stent vmlinux)\n" {
		t.Errorf("status disabled with the patch = %q, want \"disabled (stent vmlinux)\"", got)
	}
	g.sh("echo 1 > /proc/sys/fs/binfmt_misc/status")
	if got := g.sh("cat /sys/kernel/livepatch/stent_modcall/vmlinux/patched /sys/kernel/livepatch/stent_modcall/binfmt_misc/patched"); got != "1\n1\n" {
		t.Errorf("vmlinux and binfmt_misc objects patched = %q, want 1 and 1", got)
	}
	g.sh("stent revert stent_modcall")
	if got := status(); got != "enabled\n" {
		t.Errorf("status after the revert = %q, want enabled", got)
	}
	g.sh("umount /proc/sys/fs/binfmt_misc && rmmod binfmt_misc")

	// Loaded after the patch.
	g.sh("stent apply /root/modcall.bundle")
	g.sh("modprobe binfmt_misc && mount -t binfmt_misc none /proc/sys/fs/binfmt_misc")
	if got := status(); got != patched {
		t.Errorf("status of binfmt_misc loaded after the patch = %q, want %q", got, patched)
	}
	g.sh("stent revert stent_modcall")
	if got := status(); got != "enabled\n" {
		t.Errorf("status after the second revert = %q, want enabled", got)
	}
	g.noOops()
}

// TestSyscallInGuest: a fix to the newuname syscall's body (kernel/sys.c).
// Written with SYSCALL_DEFINE1, its body is __do_sys_newuname, inline and
// so notrace, which GCC keeps out of line: refused, and the refusal says to
// use STENT_SYSCALL_DEFINE1. Written with STENT_SYSCALL_DEFINE1 (Stent's
// header), the entry points are replaced and call the new body: uname(2)
// reports the new node name for the magic host name, while the kernel's
// own copy (/proc/sys/kernel/hostname) is untouched; then the revert.
func TestSyscallInGuest(t *testing.T) {
	vmtest.Kernel(t, testKernel)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	_, err := buildFix(t, ctx, "syscall_inline.patch", nil)
	var re *elfdiff.RefusedError
	if !errors.As(err, &re) || len(re.Refusals) != 1 || re.Refusals[0].Symbol != "__do_sys_newuname" || re.Refusals[0].Rule != elfdiff.RuleNoFtrace {
		t.Fatalf("Build(syscall_inline.patch) = %v, want a no-ftrace refusal naming __do_sys_newuname", err)
	}
	if !strings.Contains(err.Error(), "STENT_SYSCALL_DEFINEn(newuname, ...)") || !strings.Contains(err.Error(), "stent/livepatch.h") {
		t.Errorf("refusal %q does not say to use STENT_SYSCALL_DEFINEn and stent/livepatch.h", err)
	}

	g := classGuest(t, ctx, nil, func(n string, res *build.Result) {
		if got := strings.Join(funcNames(res), " "); got != "__ia32_sys_newuname __x64_sys_newuname" {
			t.Fatalf("Build(%s.patch) replaced %s, want __ia32_sys_newuname __x64_sys_newuname", n, got)
		}
		if !slices.Contains(res.New, "__stent_sys_newuname") {
			t.Errorf("Build(%s.patch) new functions = %v, want __stent_sys_newuname", n, res.New)
		}
	}, "syscall")
	g.sh("hostname stent-syscall")
	if got := g.sh("uname -n"); got != "stent-syscall\n" {
		t.Fatalf("uname -n before the patch = %q", got)
	}
	g.sh("stent apply /root/syscall.bundle")
	if got := g.sh("uname -n"); got != "stent-syscall-patched\n" {
		t.Errorf("uname -n with the patch = %q, want stent-syscall-patched", got)
	}
	if got := g.sh("cat /proc/sys/kernel/hostname"); got != "stent-syscall\n" {
		t.Errorf("/proc/sys/kernel/hostname with the patch = %q, want stent-syscall (only the syscall's report changes)", got)
	}
	g.sh("hostname other")
	if got := g.sh("uname -n"); got != "other\n" {
		t.Errorf("uname -n for another name with the patch = %q, want other", got)
	}
	g.sh("hostname stent-syscall")
	g.sh("stent revert stent_syscall")
	if got := g.sh("uname -n"); got != "stent-syscall\n" {
		t.Errorf("uname -n after the revert = %q, want stent-syscall", got)
	}
	g.noOops()
}

// TestCallbacksInGuest: a fix to fs/proc/cmdline.c written with Stent's
// header: cmdline_proc_show counts the reads of /proc/cmdline in a shadow
// variable of its proc_dir_entry (STENT_SHADOW) and prints the count, and
// the four callbacks log; post-unpatch frees the counter, so the count
// starts over when the patch is applied again. A second version whose
// pre-patch callback fails is refused by the kernel: stent apply says so
// and nothing stays loaded. Then the working one applies (pre- and
// post-patch logged in order), counts, and reverts (pre- and
// post-unpatch logged, /proc/cmdline as before). Last, callbacks of a
// module's object (binfmt_misc): post-patch runs when the module loads
// after the patch, pre-unpatch at the revert.
func TestCallbacksInGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	g := classGuest(t, ctx, []string{"binfmt_misc"}, func(n string, res *build.Result) {
		if n == "callbacks_module" {
			var got []string
			for _, c := range res.Callbacks {
				got = append(got, c.Object+":"+c.Kind+":"+c.Func)
			}
			if fs := funcNames(res); len(fs) != 1 || fs[0] != "bm_status_read" || strings.Join(got, " ") != "binfmt_misc:post_patch:stent_binfmt_post_patch binfmt_misc:pre_unpatch:stent_binfmt_pre_unpatch" {
				t.Fatalf("Build(%s.patch) replaced %v with callbacks %v, want bm_status_read and binfmt_misc's post_patch and pre_unpatch", n, fs, got)
			}
			return
		}
		if got := funcNames(res); len(got) != 1 || got[0] != "cmdline_proc_show" {
			t.Fatalf("Build(%s.patch) replaced %v, want only cmdline_proc_show", n, got)
		}
		var kinds []string
		for _, c := range res.Callbacks {
			if c.Object != "vmlinux" {
				t.Errorf("Build(%s.patch) callback %+v, want it on vmlinux", n, c)
			}
			kinds = append(kinds, c.Kind)
		}
		if got := strings.Join(kinds, " "); got != "pre_patch post_patch pre_unpatch post_unpatch" {
			t.Errorf("Build(%s.patch) callbacks = %s, want all four kinds", n, got)
		}
		if !bytes.Contains(res.CSource, []byte(".callbacks = { .pre_patch = ")) {
			t.Errorf("Build(%s.patch) livepatch.c sets no klp_callbacks:\n%s", n, res.CSource)
		}
	}, "callbacks", "callbacks_fail", "callbacks_module")
	before := g.sh("cat /proc/cmdline")
	logged := func(what string) string {
		return strings.TrimSpace(g.sh("dmesg | grep -c 'stent: cmdline " + what + "' || true"))
	}

	// A pre-patch callback that fails: nothing loaded, nothing changed.
	r, err := g.vm.Sh(ctx, "stent apply /root/callbacks_fail.bundle")
	if err == nil {
		t.Fatalf("stent apply of a patch whose pre-patch callback fails succeeded:\n%s", r.Stdout)
	}
	msg := r.Stdout + r.Stderr
	t.Logf("stent apply with a failing pre-patch callback: %v\n%s", err, msg)
	if !strings.Contains(msg, "pre-patch callback refused") || !strings.Contains(msg, "pre-patch callback failed for object 'vmlinux'") {
		t.Errorf("stent apply's error does not say the pre-patch callback refused, quoting the kernel")
	}
	if got := logged("pre-patch refuses"); got != "1" {
		t.Errorf("kernel log lines of the failing callback = %s, want 1", got)
	}
	if got := g.sh("ls /sys/kernel/livepatch; grep -c stent_callbacks /proc/modules || true"); strings.TrimSpace(got) != "0" {
		t.Errorf("after the refused load: livepatch entries and modules = %q, want none", got)
	}
	if got := g.sh("cat /proc/cmdline"); got != before {
		t.Errorf("/proc/cmdline after the refused load = %q, want %q", got, before)
	}

	// The working callbacks and the shadow variable.
	g.sh("stent apply /root/callbacks.bundle")
	if got := g.sh("dmesg | grep -o 'stent: cmdline p[a-z-]*' | tail -2 | tr '\\n' ' '"); got != "stent: cmdline pre-patch stent: cmdline post-patch " {
		t.Errorf("callbacks logged while applying = %q, want pre-patch then post-patch", got)
	}
	// The count is shadow state of /proc/cmdline's proc_dir_entry.
	reads := func() string {
		return strings.ReplaceAll(g.sh("for i in 1 2 3; do cat /proc/cmdline; done"), before, "")
	}
	prefix := strings.TrimSuffix(before, "\n")
	want := prefix + " stent_reads=1\n" + prefix + " stent_reads=2\n" + prefix + " stent_reads=3\n"
	if got := g.sh("for i in 1 2 3; do cat /proc/cmdline; done"); got != want {
		t.Errorf("three reads of /proc/cmdline with the patch = %q, want %q", got, want)
	}
	g.sh("stent revert stent_callbacks")
	if got := g.sh("dmesg | grep -o 'stent: cmdline p[a-z-]*' | tail -2 | tr '\\n' ' '"); got != "stent: cmdline pre-unpatch stent: cmdline post-unpatch " {
		t.Errorf("callbacks logged while reverting = %q, want pre-unpatch then post-unpatch", got)
	}
	if got := logged("post-unpatch, read counters freed"); got != "1" {
		t.Errorf("post-unpatch lines = %s, want 1", got)
	}
	if got := reads(); got != "" {
		t.Errorf("/proc/cmdline after the revert differs from before: %q", got)
	}
	// Applied again, the count starts over: post-unpatch freed the state.
	g.sh("stent apply /root/callbacks.bundle")
	if got := g.sh("cat /proc/cmdline"); got != prefix+" stent_reads=1\n" {
		t.Errorf("/proc/cmdline after applying again = %q, want the count to start over at 1", got)
	}
	g.sh("stent revert stent_callbacks")
	if got := logged("post-unpatch, read counters freed"); got != "2" {
		t.Errorf("post-unpatch lines after the second revert = %s, want 2", got)
	}
	if got := g.sh("cat /proc/cmdline"); got != before {
		t.Errorf("/proc/cmdline after the second revert = %q, want %q", got, before)
	}

	// The callbacks of a module's object run when the module is there:
	// post-patch when binfmt_misc loads after the patch.
	count := func(line string) string {
		return strings.TrimSpace(g.sh("dmesg | grep -c '" + line + "' || true"))
	}
	g.sh("stent apply /root/callbacks_module.bundle")
	if got := count("stent: binfmt_misc post-patch"); got != "0" {
		t.Errorf("binfmt_misc's post-patch callback ran %s times before the module loaded, want 0", got)
	}
	g.sh("modprobe binfmt_misc && mount -t binfmt_misc none /proc/sys/fs/binfmt_misc")
	if got := count("stent: binfmt_misc post-patch (binfmt_misc)"); got != "1" {
		t.Errorf("binfmt_misc's post-patch callback ran %s times once the module loaded, want 1", got)
	}
	if got := g.sh("cat /proc/sys/fs/binfmt_misc/status"); got != "enabled (stent callbacks)\n" {
		t.Errorf("binfmt_misc status with the patch = %q", got)
	}
	g.sh("stent revert stent_callbacks_module")
	if got := count("stent: binfmt_misc pre-unpatch (binfmt_misc)"); got != "1" {
		t.Errorf("binfmt_misc's pre-unpatch callback ran %s times at the revert, want 1", got)
	}
	if got := g.sh("cat /proc/sys/fs/binfmt_misc/status"); got != "enabled\n" {
		t.Errorf("binfmt_misc status after the revert = %q", got)
	}
	if got := g.sh("dmesg | grep -E 'BUG|Oops|WARNING|general protection' || true"); got != "" {
		t.Errorf("kernel log:\n%s", got)
	}
}
