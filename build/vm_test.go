package build_test

// End-to-end tests of the builder: fixes under testdata/patches are built
// against Debian's 6.1.0-56-amd64 packages with build.Build, which signs
// them into bundles, and applied with stent apply in that kernel booted
// under QEMU.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
)

const testKernel = vmtest.DefaultABI

// buildLock keeps the tests of this package from preparing the same tree
// at once (Build also locks; this only keeps the logs readable).
var buildLock sync.Mutex

// buildFix builds testdata/patches/patch, signing the bundle with key when
// it is not nil.
func buildFix(t *testing.T, ctx context.Context, patch string, key ed25519.PrivateKey) (*build.Result, error) {
	t.Helper()
	buildLock.Lock()
	defer buildLock.Unlock()
	start := time.Now()
	res, err := build.Build(ctx, build.Options{
		Kernel:   testKernel,
		Patches:  []string{filepath.Join("testdata", "patches", patch)},
		Progress: testLog{t},
		Key:      key,
	})
	t.Logf("build %s: %v in %.1fs", patch, err, time.Since(start).Seconds())
	return res, err
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type guest struct {
	t   *testing.T
	ctx context.Context
	vm  *vmtest.VM
}

func (g *guest) sh(script string) string {
	g.t.Helper()
	r, err := g.vm.Sh(g.ctx, script)
	if err != nil {
		g.t.Fatalf("guest: %s: %v\nstdout: %s\nstderr: %s", script, err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// TestBuiltPatchesInGuest is part 7's end-to-end list: (a) a built-in
// function, (b) a module function with the module loaded before and after
// the patch, (c) a fix reaching a static function through a livepatch
// relocation, (d) a function with a static local variable, and a patched
// function whose name occurs three times in kallsyms (sympos 2).
func TestBuiltPatchesInGuest(t *testing.T) {
	k := vmtest.Kernel(t, testKernel)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	key, keyID, trusted := testKey(t)
	files := []vmtest.File{trusted}
	results := map[string]*build.Result{}
	for _, p := range []string{"cmdline", "binfmt_misc", "drop_caches", "consoles"} {
		res, err := buildFix(t, ctx, p+".patch", key)
		if err != nil {
			t.Fatalf("Build(%s.patch) = %v", p, err)
		}
		if res.KeyID != keyID || len(res.Bundle) == 0 {
			t.Fatalf("Build(%s.patch) signed %d bytes with key %s, want a bundle signed with %s", p, len(res.Bundle), res.KeyID, keyID)
		}
		results[p] = res
		files = append(files, vmtest.File{Path: "/root/" + p + ".bundle", Data: res.Bundle})
	}
	if f := results["consoles"].Funcs; len(f) != 1 || f[0].Name != "c_start" || f[0].Sympos != 2 {
		t.Errorf("consoles.patch functions = %+v, want c_start with sympos 2 (the second of three in kallsyms)", f)
	}
	if f := results["binfmt_misc"].Funcs; len(f) != 1 || f[0].Object != "binfmt_misc" {
		t.Errorf("binfmt_misc.patch functions = %+v, want bm_status_read in object binfmt_misc", f)
	}

	vm := vmtest.Boot(ctx, t, vmtest.Options{Kernel: k, Files: files, Modules: []string{"binfmt_misc"}})
	g := &guest{t: t, ctx: ctx, vm: vm}

	t.Run("BuiltIn", func(t *testing.T) {
		g.t = t
		before := g.sh("cat /proc/cmdline")
		g.sh("stent apply /root/cmdline.bundle")
		if got := g.sh("cat /proc/cmdline"); got != strings.TrimSuffix(before, "\n")+" stent_patched=1\n" {
			t.Errorf("/proc/cmdline after apply = %q, want %q + stent_patched=1", got, before)
		}
		g.sh("stent revert stent_cmdline")
		if got := g.sh("cat /proc/cmdline"); got != before {
			t.Errorf("/proc/cmdline after revert = %q, want %q", got, before)
		}
	})

	t.Run("ModuleLoadedBefore", func(t *testing.T) {
		g.t = t
		g.sh("modprobe binfmt_misc && mount -t binfmt_misc none /proc/sys/fs/binfmt_misc")
		if got := g.sh("cat /proc/sys/fs/binfmt_misc/status"); got != "enabled\n" {
			t.Fatalf("status before the patch = %q", got)
		}
		g.sh("stent apply /root/binfmt_misc.bundle")
		if got := g.sh("cat /proc/sys/fs/binfmt_misc/status"); got != "enabled (stent)\n" {
			t.Errorf("status with the patch = %q, want \"enabled (stent)\"", got)
		}
		g.sh("stent revert stent_binfmt_misc")
		g.sh("umount /proc/sys/fs/binfmt_misc && rmmod binfmt_misc")
	})

	t.Run("ModuleLoadedAfter", func(t *testing.T) {
		g.t = t
		if strings.Contains(g.sh("cat /proc/modules"), "binfmt_misc") {
			t.Fatal("binfmt_misc still loaded")
		}
		g.sh("stent apply /root/binfmt_misc.bundle")
		g.sh("modprobe binfmt_misc && mount -t binfmt_misc none /proc/sys/fs/binfmt_misc")
		if got := g.sh("cat /proc/sys/fs/binfmt_misc/status"); got != "enabled (stent)\n" {
			t.Errorf("status of a module loaded after the patch = %q, want \"enabled (stent)\"", got)
		}
		if got := g.sh("cat /sys/kernel/livepatch/stent_binfmt_misc/binfmt_misc/patched 2>/dev/null || echo none"); strings.TrimSpace(got) != "1" {
			t.Errorf("binfmt_misc object patched = %q, want 1", got)
		}
		g.sh("stent revert stent_binfmt_misc")
		if got := g.sh("cat /proc/sys/fs/binfmt_misc/status"); got != "enabled\n" {
			t.Errorf("status after revert = %q", got)
		}
	})

	t.Run("StaticFunction", func(t *testing.T) {
		g.t = t
		g.sh("stent apply /root/drop_caches.bundle")
		// Writing 1 runs iterate_supers(drop_pagecache_sb): the patched
		// handler reaches the static function through a klp relocation.
		g.sh("echo 1 > /proc/sys/vm/drop_caches")
		if got := g.sh("dmesg | grep -c 'drop_caches (stent): 1' || true"); strings.TrimSpace(got) != "1" {
			t.Errorf("kernel log lines from the patched handler = %q, want 1\n%s", got, g.sh("dmesg | tail -5"))
		}
	})

	t.Run("StaticLocal", func(t *testing.T) {
		g.t = t
		// The patched handler sets the original's static stfu: after the
		// revert, the original handler stays quiet.
		g.sh("echo 4 > /proc/sys/vm/drop_caches")
		g.sh("stent revert stent_drop_caches")
		g.sh("echo 1 > /proc/sys/vm/drop_caches")
		if got := g.sh("dmesg | grep -c ': drop_caches: 1' || true"); strings.TrimSpace(got) != "0" {
			t.Errorf("the original handler logged after the patched one set stfu: the patch used its own copy of the static local\n%s", g.sh("dmesg | tail -5"))
		}
	})

	t.Run("Sympos", func(t *testing.T) {
		g.t = t
		g.sh("stent apply /root/consoles.bundle")
		if got := g.sh("head -1 /proc/consoles"); got != "stent-consoles\n" {
			t.Errorf("first line of /proc/consoles = %q, want stent-consoles", got)
		}
		if got := g.sh("cat /proc/cpuinfo | head -1"); !strings.HasPrefix(got, "processor") {
			t.Errorf("/proc/cpuinfo (another c_start) broke: %q", got)
		}
		g.sh("stent revert stent_consoles")
	})
}

// TestDataChangeRefused is (e): a fix changing the initial value of
// existing data is refused at build time, naming the symbol.
func TestDataChangeRefused(t *testing.T) {
	vmtest.Kernel(t, testKernel) // skips under -short or without the tools
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, err := buildFix(t, ctx, "data_init.patch", nil)
	var re *elfdiff.RefusedError
	if !errors.As(err, &re) || !errors.Is(err, elfdiff.ErrRefused) {
		t.Fatalf("Build(data_init.patch) = %v, want a refusal", err)
	}
	if len(re.Refusals) != 1 || re.Refusals[0].Symbol != "sysctl_drop_caches" || re.Refusals[0].Rule != elfdiff.RuleDataChanged {
		t.Errorf("refusals = %+v, want one data-changed refusal naming sysctl_drop_caches", re.Refusals)
	}
	if !strings.Contains(err.Error(), "shadow variable") {
		t.Errorf("refusal %q does not suggest an alternative", err)
	}
}

// TestPatchDoesNotApply: a fix for other source fails before compiling and
// leaves the tree pristine.
func TestPatchDoesNotApply(t *testing.T) {
	vmtest.Kernel(t, testKernel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := filepath.Join(t.TempDir(), "stale.patch")
	os.WriteFile(p, []byte("--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -7,3 +7,3 @@\n static int cmdline_proc_show(struct seq_file *m, void *v)\n {\n-\tseq_puts(m, no_such_line);\n+\tseq_puts(m, other);\n"), 0o644)
	buildLock.Lock()
	_, err := build.Build(ctx, build.Options{Kernel: testKernel, Patches: []string{p}})
	buildLock.Unlock()
	if !errors.Is(err, build.ErrPatchDoesNotApply) {
		t.Fatalf("Build(stale.patch) = %v, want ErrPatchDoesNotApply", err)
	}
	if !strings.Contains(err.Error(), "FAILED") && !strings.Contains(err.Error(), "hunk") {
		t.Errorf("error %q does not quote patch's message", err)
	}
	// The tree is untouched: the next build of a good fix works.
	if _, err := buildFix(t, ctx, "cmdline.patch", nil); err != nil {
		t.Errorf("Build(cmdline.patch) after a failed one = %v", err)
	}
	cache, _ := kpkg.CacheDir()
	if b, err := os.ReadFile(filepath.Join(cache, "trees", testKernel, "tree", "fs", "proc", "cmdline.c")); err != nil || bytes.Contains(b, []byte("other")) {
		t.Errorf("tree's cmdline.c after the builds: err %v, patched %v", err, bytes.Contains(b, []byte("other")))
	}
}

// TestCompileErrorQuoted: a fix that does not compile fails with the
// compiler's message.
func TestCompileErrorQuoted(t *testing.T) {
	vmtest.Kernel(t, testKernel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := filepath.Join(t.TempDir(), "broken.patch")
	os.WriteFile(p, []byte("--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -9,3 +9,3 @@\n \tseq_puts(m, saved_command_line);\n-\tseq_putc(m, '\\n');\n+\tseq_putc(m, undeclared_thing);\n \treturn 0;\n"), 0o644)
	buildLock.Lock()
	_, err := build.Build(ctx, build.Options{Kernel: testKernel, Patches: []string{p}})
	buildLock.Unlock()
	var me *build.MakeError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "undeclared_thing") || !strings.Contains(err.Error(), "error:") {
		t.Fatalf("Build(broken.patch) = %v, want a compile error quoting gcc about undeclared_thing", err)
	}
}

// testKey makes a signing key for the bundles a guest test builds, its ID,
// and the guest file that makes stent trust it.
func testKey(t *testing.T) (ed25519.PrivateKey, bundle.KeyID, vmtest.File) {
	t.Helper()
	kf, err := bundle.GenerateKey(t.TempDir(), "test", false)
	if err != nil {
		t.Fatal(err)
	}
	key, err := bundle.LoadPrivateKey(kf.Private)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(kf.Public)
	if err != nil {
		t.Fatal(err)
	}
	return key, kf.ID, vmtest.File{Path: "/etc/stent/keys/test.pub", Data: pub}
}
