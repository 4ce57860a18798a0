// Command benchapply measures `stent apply` end to end against the bare
// minimum a person could do by hand (insmod, then poll the transition file
// until it reads 0) in the same guest boot of a real Debian kernel under
// QEMU, alternating the two, and reports medians, the ratio and the peak
// RSS of stent apply. `make bench` runs it; docs/benchmarks.md keeps the
// figures.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/loadavg"
	"github.com/stent-dev/stent/internal/vmtest"
)

const (
	abi  = "6.1.0-56-amd64"
	name = "stent_lp_cmdline_v1"
)

func main() {
	n := flag.Int("n", 15, "measured iterations of each variant")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n); err != nil {
		fmt.Fprintf(os.Stderr, "benchapply: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int) error {
	k, err := kpkg.Fetch(ctx, abi, os.Stderr)
	if err != nil {
		return err
	}
	koPath, err := vmtest.BuildModule(ctx, k, name)
	if err != nil {
		return err
	}
	ko, err := os.ReadFile(koPath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchapply")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pubKey, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pub, err := bundle.EncodePublicKey(pubKey)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	m := &bundle.Manifest{FormatVersion: bundle.FormatVersion, Name: name, Level: 1, Replace: true,
		Kernel:    bundle.Kernel{Release: k.Release, PackageVersion: k.PackageVersion},
		Functions: []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Created:   time.Now().UTC().Truncate(time.Second), Description: "benchmark patch"}
	if err := bundle.Create(&b, m, ko, key); err != nil {
		return err
	}

	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: k, LogDir: dir, Files: []vmtest.File{
		{Path: "/etc/stent/keys/bench.pub", Data: pub},
		{Path: "/root/lp.bundle", Data: b.Bytes()},
		{Path: "/root/lp.ko", Data: ko},
	}})
	if err != nil {
		return err
	}
	defer vm.Close()

	sh := func(script string) (vmtest.Result, error) {
		argv := []string{"sh", "-c", script}
		if strings.HasPrefix(script, "stent ") {
			argv = strings.Fields(script) // run stent directly: its own time and RSS
		}
		r, err := vm.Exec(ctx, vmtest.Cmd{Argv: argv, Timeout: time.Minute})
		var ee *vmtest.ExitError
		if errors.As(err, &ee) {
			return r, fmt.Errorf("guest %q: exit %d: %s", script, r.Exit, r.Stderr)
		}
		return r, err
	}
	sysdir := "/sys/kernel/livepatch/" + name
	stentApply := "stent apply -q " + "/root/lp.bundle"
	rawApply := "insmod /root/lp.ko && while [ \"$(cat " + sysdir + "/transition)\" != 0 ]; do :; done"
	stentUndo := "stent revert -q " + name
	rawUndo := "echo 0 > " + sysdir + "/enabled; while [ -d " + sysdir + " ]; do :; done; until rmmod " + name + " 2>/dev/null; do :; done"

	var stentT, rawT, startT []time.Duration
	var peakRSS int64
	for i := -1; i < n; i++ { // i == -1 is the warm-up round
		r, err := sh(stentApply)
		if err != nil {
			return err
		}
		if i >= 0 {
			stentT = append(stentT, r.Duration)
			peakRSS = max(peakRSS, r.MaxRSSKB)
		}
		if _, err := sh(stentUndo); err != nil {
			return err
		}
		r, err = sh(rawApply)
		if err != nil {
			return err
		}
		if i >= 0 {
			rawT = append(rawT, r.Duration)
		}
		if _, err := sh(rawUndo); err != nil {
			return err
		}
		// The floor under stent apply: starting the binary at all.
		r, err = sh("stent uname -r")
		if err != nil {
			return err
		}
		if i >= 0 {
			startT = append(startT, r.Duration)
		}
		fmt.Fprintf(os.Stderr, "\rround %d/%d", i+1, n)
	}
	fmt.Fprintln(os.Stderr)
	ms, mr := median(stentT), median(rawT)
	fmt.Printf("kernel %s under QEMU TCG, %d alternating rounds in one boot\n", abi, n)
	fmt.Printf("| variant | median | min | max |\n|---|---|---|---|\n")
	fmt.Printf("| stent apply (signed bundle) | %s | %s | %s |\n", ms.Round(time.Millisecond), slices.Min(stentT).Round(time.Millisecond), slices.Max(stentT).Round(time.Millisecond))
	fmt.Printf("| insmod + poll transition | %s | %s | %s |\n", mr.Round(time.Millisecond), slices.Min(rawT).Round(time.Millisecond), slices.Max(rawT).Round(time.Millisecond))
	fmt.Printf("| (stent uname -r: starting stent at all) | %s | %s | %s |\n", median(startT).Round(time.Millisecond), slices.Min(startT).Round(time.Millisecond), slices.Max(startT).Round(time.Millisecond))
	fmt.Printf("ratio (median stent / median raw): %.2f (goal <= 1.10); of the fastest runs: %.2f\n", float64(ms)/float64(mr), float64(slices.Min(stentT))/float64(slices.Min(rawT)))
	if l := loadavg.String(); l != "?" {
		// TCG shares the host's cores: a loaded host stretches both variants.
		fmt.Printf("host load average at the end: %s\n", l)
	}
	fmt.Printf("peak RSS of stent apply: %.1f MB\n", float64(peakRSS)/1024)
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
