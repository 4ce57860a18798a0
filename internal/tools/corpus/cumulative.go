package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
)

// cumulativeResult is the -cumulative run: the corpus' fixes marked
// "cumulative" (one kernel, vmlinux only) built into two cumulative
// patches, the first with the first half of them, the second with all of
// them replacing the first, live, while the fixes' checks run in a loop.
type cumulativeResult struct {
	Kernel     string
	First      []string // fixes in level 1
	All        []string // fixes in level 2
	BuildFirst time.Duration
	BuildAll   time.Duration
	FuncsAll   int
	// Hammer rounds (every check once) completed before level 2 was
	// applied, when stent apply of level 2 returned, and in all.
	RoundsBefore, RoundsAt, Rounds int
	// NewFailedBefore counts the failed checks of fixes only level 2
	// carries in rounds started before its apply returned (expected of
	// checks that fail unpatched: before and during the transition).
	NewFailedBefore int
	Transition      time.Duration // stent apply of level 2 under load: load, transition, record
	Replaced        string
}

func runCumulative(ctx context.Context, cfg config) (*cumulativeResult, error) {
	fixes, err := loadCorpus(cfg.dir)
	if err != nil {
		return nil, err
	}
	var sel []*Fix
	for _, f := range fixes {
		if f.Cumulative {
			sel = append(sel, f)
		}
	}
	if len(sel) < 2 {
		return nil, fmt.Errorf("corpus: -cumulative needs at least two fixes marked \"cumulative\", have %d", len(sel))
	}
	res := &cumulativeResult{Kernel: sel[0].Kernel}
	for _, f := range sel {
		if f.Kernel != res.Kernel || len(f.Modules) > 0 || f.Expect != "build" {
			return nil, fmt.Errorf("corpus: %s: cumulative fixes must all be built-in fixes (expect build, no modules) for one kernel (%s)", f.Name, res.Kernel)
		}
	}
	first := sel[:len(sel)/2]
	r, err := newRunner(cfg.log)
	if err != nil {
		return nil, err
	}
	defer r.close()
	patches := func(fs []*Fix) []string {
		var p []string
		for _, f := range fs {
			p = append(p, f.Patch)
		}
		return p
	}
	names := func(fs []*Fix) []string {
		var n []string
		for _, f := range fs {
			n = append(n, f.Name)
		}
		return n
	}
	res.First, res.All = names(first), names(sel)
	fmt.Fprintf(cfg.log, "corpus: cumulative level 1: %s\n", strings.Join(res.First, " "))
	start := time.Now()
	b1, err := build.Build(ctx, build.Options{Kernel: res.Kernel, Patches: patches(first), Name: "stent_c_cumulative", Key: r.key})
	if err != nil {
		return nil, fmt.Errorf("build level 1: %w", err)
	}
	res.BuildFirst = time.Since(start)
	fmt.Fprintf(cfg.log, "corpus: cumulative level 2: %s\n", strings.Join(res.All, " "))
	start = time.Now()
	b2, err := build.Build(ctx, build.Options{Kernel: res.Kernel, Patches: patches(sel), Name: "stent_c_cumulative_2", Key: r.key, Cumulative: b1.Manifest})
	if err != nil {
		return nil, fmt.Errorf("build level 2: %w", err)
	}
	res.BuildAll = time.Since(start)
	res.FuncsAll = len(b2.Funcs)
	fmt.Fprintf(cfg.log, "corpus: built level 1 (%d functions) in %v, level 2 (%d functions) in %v\n",
		len(b1.Funcs), res.BuildFirst.Round(time.Second), len(b2.Funcs), res.BuildAll.Round(time.Second))

	k, err := kpkg.Fetch(ctx, res.Kernel, cfg.log)
	if err != nil {
		return nil, err
	}
	files := []vmtest.File{
		{Path: "/etc/stent/keys/corpus.pub", Data: r.pub},
		{Path: "/root/level1.bundle", Data: b1.Bundle},
		{Path: "/root/level2.bundle", Data: b2.Bundle},
	}
	// Every fix's setup once; then the hammer: the checks in a loop until
	// told to stop, a failing round recorded.
	var setup, hammer strings.Builder
	hammer.WriteString("rm -f /tmp/hammer.*\n")
	for _, f := range sel {
		gf, err := r.guestFiles(ctx, f)
		if err != nil {
			return nil, err
		}
		files = append(files, gf...)
		if f.Setup != "" {
			fmt.Fprintf(&setup, "(FIX=/root/%s; set -e; %s)\n", f.Name, f.Setup)
		}
	}
	hammer.WriteString("n=0\nwhile [ ! -e /tmp/hammer.stop ]; do\n")
	// A level 1 fix must hold in every round: level 1 and level 2 both
	// carry it, and the replacement leaves no gap. A fix only level 2
	// carries may fail until level 2 is in (its check may test the fixed
	// behaviour, fails_unpatched): its failures go to hammer.new, and
	// count from the first round started after level 2's apply returned.
	for i, f := range sel {
		failFile := "/tmp/hammer.fail"
		if i >= len(first) {
			failFile = "/tmp/hammer.new"
		}
		fmt.Fprintf(&hammer, "  (FIX=/root/%s; set -e; %s) >/dev/null 2>&1 || echo \"$n %s\" >> %s\n", f.Name, f.Check, f.Name, failFile)
	}
	hammer.WriteString("  n=$((n+1)); echo $n > /tmp/hammer.rounds\ndone\ntouch /tmp/hammer.done\n")
	files = append(files, vmtest.File{Path: "/root/hammer.sh", Data: []byte(hammer.String()), Mode: 0o755})
	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: k, Files: files, MemMB: 1024, BootTimeout: 6 * time.Minute, Append: bootAppend})
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	g := &guestSession{ctx: ctx, vm: vm, log: cfg.log}
	o := &outcome{Fix: &Fix{Name: "cumulative"}}
	rounds := func() int {
		var n int
		fmt.Sscan(strings.TrimSpace(g.sh(o, "rounds", "cat /tmp/hammer.rounds")), &n)
		return n
	}
	var runErr error
	func() {
		defer func() {
			if v := recover(); v != nil {
				e, ok := v.(*errStep)
				if !ok {
					panic(v)
				}
				runErr = fmt.Errorf("guest: %s\nconsole:\n%s", e.msg, vm.ConsoleTail(30))
			}
		}()
		g.sh(o, "clear log", "dmesg -c >/dev/null")
		if setup.Len() > 0 {
			g.sh(o, "setup", setup.String())
		}
		g.sh(o, "apply level 1", "stent apply /root/level1.bundle")
		// Level 1's fixes are live: each check reaches level 1's code.
		for _, f := range first {
			g.checkIn(o, f, "stent_c_cumulative", f.Name+" in level 1")
		}
		g.sh(o, "start the hammer", "setsid sh /root/hammer.sh >/tmp/hammer.log 2>&1 </dev/null &\n"+
			"i=0; until [ -e /tmp/hammer.rounds ]; do i=$((i+1)); [ $i -lt 600 ]; sleep 0.2; done")
		res.RoundsBefore = rounds()
		start := time.Now()
		res.Replaced = g.sh(o, "apply level 2 under load", "stent apply /root/level2.bundle")
		res.Transition = time.Since(start)
		res.RoundsAt = rounds()
		// Let the hammer run on level 2 for at least two more rounds.
		g.sh(o, "hammer on level 2", fmt.Sprintf("i=0; until [ $(cat /tmp/hammer.rounds) -ge %d ]; do i=$((i+1)); [ $i -lt 1500 ]; sleep 0.2; done\n", res.RoundsAt+2)+
			"touch /tmp/hammer.stop\ni=0; until [ -e /tmp/hammer.done ]; do i=$((i+1)); [ $i -lt 1500 ]; sleep 0.2; done")
		res.Rounds = rounds()
		if fails := g.sh(o, "hammer failures", "cat /tmp/hammer.fail 2>/dev/null || true"); fails != "" {
			panic(&errStep{"checks of level 1's fixes failed under the hammer (round, fix): " + oneLine(fails)})
		}
		for _, line := range strings.Split(g.sh(o, "hammer failures of level 2's new fixes", "cat /tmp/hammer.new 2>/dev/null || true"), "\n") {
			var round int
			var name string
			if _, err := fmt.Sscan(line, &round, &name); err != nil {
				continue
			}
			if round > res.RoundsAt {
				panic(&errStep{fmt.Sprintf("%s's check failed in hammer round %d, started after level 2 was applied (round %d)", name, round, res.RoundsAt)})
			}
			res.NewFailedBefore++
		}
		if got := g.sh(o, "patches", "ls /sys/kernel/livepatch"); len(strings.Fields(got)) != 1 || strings.Fields(got)[0] != "stent_c_cumulative_2" {
			panic(&errStep{fmt.Sprintf("/sys/kernel/livepatch = %q, want only stent_c_cumulative_2", got)})
		}
		// After the replacement every fix's check reaches level 2's code:
		// the patched behaviour holds, including level 1's fixes.
		for _, f := range sel {
			g.checkIn(o, f, "stent_c_cumulative_2", f.Name+" in level 2")
		}
		g.sh(o, "revert", "stent revert stent_c_cumulative_2")
		g.logCheck(o)
		if o.Oops {
			panic(&errStep{o.Err})
		}
	}()
	if runErr != nil {
		return nil, runErr
	}
	return res, nil
}
