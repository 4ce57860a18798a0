package build

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
)

// realObjects are kernel files with plenty of special sections: bug table,
// exception tables, jump labels, alternatives, static calls, retpoline and
// return sites, ORC, paravirt, per-CPU data, lockdep keys, dynamic debug;
// tracepoint output functions with several static print tables each
// (compaction, fs-writeback).
var realObjects = []string{
	"fs/proc/base.c", "fs/namei.c", "kernel/fork.c", "kernel/sched/core.c",
	"mm/memory.c", "net/ipv4/tcp.c", "kernel/workqueue.c", "arch/x86/kernel/process.c",
	"fs/ext4/inode.c", "lib/iov_iter.c", "mm/compaction.c", "fs/fs-writeback.c",
}

// prepared returns the prepared tree of the test kernel, skipping the test
// when it cannot be had.
func prepared(t *testing.T, ctx context.Context) (*kpkg.Kernel, *Tree, string) {
	t.Helper()
	k := vmtest.Kernel(t, vmtest.DefaultABI)
	cache, err := kpkg.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	src, err := Source(ctx, cache, k.PackageVersion, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := PrepareTree(ctx, cache, src, "", k.Release, k.Config, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	return k, tree, cache
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// shiftPatch makes a fix that only adds blank lines after line 1 of file,
// moving every __LINE__ below it.
func shiftPatch(t *testing.T, tree, file string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(tree, file))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	sc.Scan()
	first := sc.Text()
	f.Close()
	p := filepath.Join(t.TempDir(), strings.ReplaceAll(file, "/", "_")+".patch")
	// The blank lines go before the first line: a hunk with context only
	// before its change would have to end the file, and patch(1) applies
	// it elsewhere only with fuzz.
	body := fmt.Sprintf("--- a/%s\n+++ b/%s\n@@ -1 +1,4 @@\n+\n+\n+\n %s\n", file, file, first)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLineShiftRealObjects compiles real kernel files before and after
// adding blank lines at their top: no function may count as changed.
func TestLineShiftRealObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	k, tree, cache := prepared(t, ctx)
	vmsyms, _, err := KernelSymbols(ctx, k.Vmlinuz, filepath.Join(cache, "build", k.Release))
	if err != nil {
		t.Fatal(err)
	}
	symvers, err := ReadSymvers(filepath.Join(k.HeadersDir, "Module.symvers"))
	if err != nil {
		t.Fatal(err)
	}
	var patches []string
	var changes []FileChange
	var objs []string
	for _, f := range realObjects {
		patches = append(patches, shiftPatch(t, tree.Dir, f))
		changes = append(changes, FileChange{Path: f})
		objs = append(objs, strings.TrimSuffix(f, ".c")+".o")
	}
	pairs, _, err := tree.Compile(ctx, cache, Fix{Patches: patches, Changes: changes}, objs, t.TempDir(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pairs {
		symtab := vmsyms
		if p.Target != "vmlinux" {
			if symtab, _, err = ModuleSymbols(k.ModulesDir, p.Target, p.ModFile); err != nil {
				t.Fatal(err)
			}
		}
		res, err := diffPair(p, elfdiff.Options{Object: p.Target, File: p.Source, Symtab: symtab, Exported: symvers.Exported, Prefix: fmt.Sprint(i)})
		if err != nil {
			t.Errorf("%s: Diff = %v", p.Source, err)
			continue
		}
		var names []string
		for _, f := range res.Funcs {
			names = append(names, f.Name)
		}
		if len(names) > 0 {
			t.Errorf("%s: blank lines made %d functions count as changed: %s", p.Source, len(names), strings.Join(names, " "))
		}
		t.Logf("%s (%s): %d functions unchanged but for __LINE__", p.Source, p.Target, len(res.LineOnly))
		// Carrying every function runs the struct layout check on real
		// DWARF: moved lines change no layout.
		_, err = diffPair(p, elfdiff.Options{Object: p.Target, File: p.Source, Symtab: symtab, Exported: symvers.Exported, Prefix: fmt.Sprint(i),
			Force: func(string) bool { return true }})
		var re *elfdiff.RefusedError
		if errors.As(err, &re) {
			for _, r := range re.Refusals {
				if strings.HasPrefix(r.Symbol, "struct ") || strings.HasPrefix(r.Symbol, "union ") {
					t.Errorf("%s: blank lines changed the layout of %s: %s", p.Source, r.Symbol, r.Reason)
				}
			}
		}
	}
}

// TestCarryEverything carries every patchable function of busy kernel
// files, ext4's inode.c among them (a module, in use), into one livepatch
// module (their fix only moves lines), applies it in a guest, runs a
// workload through the new copies and reverts: every relocation,
// special-section entry and .cold part must be right or the guest oopses.
func TestCarryEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	k, tree, _ := prepared(t, ctx)
	files := []string{"fs/namei.c", "fs/proc/base.c", "kernel/fork.c", "mm/memory.c", "fs/binfmt_misc.c", "fs/ext4/inode.c"}
	if env := os.Getenv("STENT_CARRY_FILES"); env != "" {
		files = strings.Fields(env) // to bisect a failure
	}
	var patches []string
	for _, f := range files {
		patches = append(patches, shiftPatch(t, tree.Dir, f))
	}
	res, err := Build(ctx, Options{
		Kernel: k.Release, Patches: patches, Name: "stent_carry_all", Progress: testWriter{t},
		Force:    func(string, string) bool { return true },
		KeepWork: os.Getenv("STENT_CARRY_KEEP") != "",
	})
	if err != nil {
		t.Fatalf("Build = %v", err)
	}
	perObject := map[string]int{}
	for _, f := range res.Funcs {
		perObject[f.File]++
	}
	t.Logf("carried %d functions (%v), module %d bytes; new data %v", len(res.Funcs), perObject, len(res.Module), res.Data)
	for _, w := range res.Warnings {
		t.Log("warning:", w)
	}
	// The disk is ext4, mounted at /var/lib/stent: ext4 is loaded and busy.
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := vmtest.NewDisk(ctx, disk, 64); err != nil {
		t.Fatal(err)
	}
	vm := vmtest.Boot(ctx, t, vmtest.Options{Kernel: k, Modules: []string{"binfmt_misc"}, Disk: disk,
		Files: []vmtest.File{{Path: "/root/all.ko", Data: res.Module}}})
	script := `set -e
modprobe binfmt_misc
insmod /root/all.ko
for i in $(seq 50); do [ "$(cat /sys/kernel/livepatch/stent_carry_all/transition)" = 0 ] && break; sleep 0.2; done
cat /sys/kernel/livepatch/stent_carry_all/transition
mount -t binfmt_misc none /proc/sys/fs/binfmt_misc
cat /proc/sys/fs/binfmt_misc/status
for i in 1 2 3; do ls -laR /proc/self/ >/dev/null 2>&1 || true; find / -xdev >/dev/null; cat /proc/*/status >/dev/null 2>&1 || true; done
for i in $(seq 20); do sh -c 'echo $$ > /dev/null'; done
dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; cat /tmp/f | md5sum; rm /tmp/f
for i in $(seq 30); do echo "file $i" > /var/lib/stent/f$i; done; cp /tmp/../root/all.ko /var/lib/stent/copy; sync
cat /var/lib/stent/f7; cmp /root/all.ko /var/lib/stent/copy; rm /var/lib/stent/f* /var/lib/stent/copy; sync
echo 0 > /sys/kernel/livepatch/stent_carry_all/enabled
for i in $(seq 50); do [ -d /sys/kernel/livepatch/stent_carry_all ] || break; sleep 0.2; done
dmesg | grep -E 'BUG|Oops|WARNING|general protection|livepatch: .*(fail|error)' || true
`
	// Loading resolves some 500 livepatch symbols, each a walk of kallsyms:
	// 2.5 min of emulated time on a busy 2-core machine.
	wctx, wcancel := context.WithTimeout(ctx, 8*time.Minute)
	defer wcancel()
	r, err := vm.Sh(wctx, script)
	t.Logf("guest:\n%s%s", r.Stdout, r.Stderr)
	if err != nil {
		if os.Getenv("STENT_CARRY_CONSOLE") != "" {
			t.Logf("console:\n%s", vm.Console())
		}
		t.Fatalf("workload with every function carried: %v", err)
	}
	if strings.Contains(r.Stdout, "BUG") || strings.Contains(r.Stdout, "Oops") || strings.Contains(r.Stdout, "WARNING") || strings.Contains(r.Stdout, "general protection") {
		t.Errorf("kernel complained while running the carried functions")
	}
	if !strings.HasPrefix(r.Stdout, "0\nenabled\n") || !strings.Contains(r.Stdout, "file 7\n") {
		t.Errorf("transition and binfmt_misc status = %q, want 0 and enabled", r.Stdout)
	}
}
