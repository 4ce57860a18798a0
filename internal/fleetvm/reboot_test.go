package fleetvm

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/debvm"
)

// TestFleetKernelUpdates runs the standard path of the strategy on real
// Debian 12 systems (systemd, apt, dpkg, GRUB, booted from their own disks
// under QEMU) with Stent installed from its .deb, against a stent-server
// on the host:
//
//   - web1..web3, group web, max-unavailable 1, a window that is closed
//     while they install the new kernel through apt and opens during the
//     test: none reboots before the window opens (a non-urgent update
//     waits), and, judged from the consoles' timestamps alone, every
//     reboot falls inside the window and no two hosts are down at once;
//     all three come back on the new kernel, made the default.
//   - db1, group db, whose window is hours away, gets an emergency kernel
//     rollout: it reboots at once, outside its window; its new kernel's
//     initramfs panics (a kernel that does not boot), GRUB's one-shot
//     entry is spent, the host comes back on the old kernel by itself, the
//     agent reports the fallback and the server halts that rollout.
//   - web1 also runs an older third kernel: after the update, stent kernel
//     cleanup --keep 2 removes it and leaves the running and the fallback
//     kernel.
func TestFleetKernelUpdates(t *testing.T) {
	// Not yet part of make test: on a 2-core machine under emulation the
	// scenario (four guests, five apt kernel installs, four reboots) has
	// not finished within the suite's time; its emergency-and-fallback half
	// passed on real guests, the window half timed out while the three web
	// hosts installed their kernel (docs/benchmarks.md). Run it by hand
	// until it fits: STENT_FLEETVM=1 go test ./internal/fleetvm -v.
	if os.Getenv("STENT_FLEETVM") != "1" {
		t.Skip("the real-system fleet scenario runs only with STENT_FLEETVM=1 until it fits the suite's time on 2 cores (see docs/benchmarks.md)")
	}
	img, info, ks := debvm.TestImage(t)
	older := olderKernel(t, ks)
	repo := debvm.TestRepo(t, append(ks.NewDebs(), older))
	deb := stentDeb(t)
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	start := time.Now()

	// Windows: both closed now, hours away.
	closed := time.Now().UTC().Add(10 * time.Hour)
	f.setWindow(api.MaintenanceWindow{Name: "web", When: fmt.Sprintf("daily %s-%s UTC", closed.Format("15:04"), closed.Add(time.Hour).Format("15:04")),
		Selector: map[string]string{"group": "web"}, MaxUnavailable: "1"})
	f.setWindow(api.MaintenanceWindow{Name: "db", When: fmt.Sprintf("daily %s-%s UTC", closed.Format("15:04"), closed.Add(time.Hour).Format("15:04")),
		Selector: map[string]string{"group": "db"}, MaxUnavailable: "1"})
	webTok, dbTok := f.enrollToken(map[string]string{"group": "web"}), f.enrollToken(map[string]string{"group": "db"})
	names := []string{"web1", "web2", "web3", "db1"}
	tokens := map[string]string{"web1": webTok, "web2": webTok, "web3": webTok, "db1": dbTok}
	// db1's copy of the new kernel does not boot: an initramfs script
	// (in place before apt builds that kernel's initramfs) crashes it.
	panicScript := "#!/bin/sh\n[ \"$1\" = prereqs ] && exit 0\n[ \"$(uname -r)\" = " + ks.New.ABI + " ] || exit 0\necho 'fleetvm: this initramfs panics on purpose'\necho c > /proc/sysrq-trigger\n"
	extra := map[string][]debvm.File{"db1": {{Path: "/etc/initramfs-tools/scripts/init-top/fleetvm-panic", Data: []byte(panicScript), Mode: 0o755}}}
	mctx, stopMonitor := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() { f.monitor(mctx); close(monitorDone) }()
	defer func() { stopMonitor(); <-monitorDone }()
	hosts := f.bootHosts(ctx, img, repo, deb, names, tokens, extra)
	t.Logf("4 hosts booted, Stent installed from %s and enrolled: %v", deb, time.Since(start).Round(time.Second))

	// web1 gets an older third kernel, as a host that has been around.
	olderPkg := strings.SplitN(strings.TrimSuffix(older[strings.LastIndex(older, "/")+1:], ".deb"), "_", 2)[0]
	olderDone := make(chan error, 1)
	go func() {
		res, err := hosts["web1"].Run(ctx, "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "+olderPkg+" 2>&1 | tail -3")
		if err != nil {
			err = fmt.Errorf("%w: %s", err, res.Stdout)
		}
		olderDone <- err
	}()

	// The emergency: db1 reboots now, outside its window.
	deadline := time.Now().Add(time.Hour)
	var dbRollout api.KernelRollout
	f.do(http.MethodPost, api.PathKernelRollouts, api.KernelRolloutRequest{Release: ks.New.ABI, Version: ks.New.Version,
		Packages: []string{ks.New.Package, "linux-image-amd64"}, Selector: map[string]string{"group": "db"}, Emergency: true,
		Deadline: &deadline, Reason: "CVE-2026-0001 (CVSS 9.8), no live patch"}, &dbRollout)

	if err := <-olderDone; err != nil {
		t.Fatalf("web1: install %s: %v", olderPkg, err)
	}
	var webRollout api.KernelRollout
	f.do(http.MethodPost, api.PathKernelRollouts, api.KernelRolloutRequest{Release: ks.New.ABI, Version: ks.New.Version,
		Packages: []string{ks.New.Package, "linux-image-amd64"}, Selector: map[string]string{"group": "web"},
		Reason: "monthly kernel update"}, &webRollout)

	// Every web host installs the kernel through apt and then waits: its
	// window is closed.
	f.waitRollout(webRollout.ID, 25*time.Minute, "all 3 web hosts installed", func(r api.KernelRollout) bool {
		return r.Counts[api.KernelInstalled] == 3
	})
	t.Logf("web hosts installed %s through apt: %v", ks.New.ABI, time.Since(start).Round(time.Second))
	for _, n := range []string{"web1", "web2", "web3"} {
		if b := hosts[n].Boots(); len(b) != 1 {
			t.Fatalf("%s rebooted before its window opened: boots %+v", n, b)
		}
	}

	// The emergency host went ahead, fell back by itself, and its rollout
	// is halted.
	dr := f.waitRollout(dbRollout.ID, 25*time.Minute, "halted by db1's fallback", func(r api.KernelRollout) bool {
		return r.State == api.RolloutHalted
	})
	if !strings.Contains(dr.Halt, "db1") {
		t.Errorf("db rollout halt reason %q, want it to name db1", dr.Halt)
	}
	db := hosts["db1"]
	boots := db.Boots()
	if len(boots) < 3 || boots[1].Kernel != ks.New.ABI || boots[len(boots)-1].Kernel != ks.Old.ABI {
		t.Fatalf("db1 boots %+v, want %s, then %s (panics), then back on %s", boots, ks.Old.ABI, ks.New.ABI, ks.Old.ABI)
	}
	if boots[1].Time.After(closed) {
		t.Errorf("db1's emergency reboot at %s was not before its window", boots[1].Time)
	}
	var fb *api.HostReboot
	rs := f.reboots()
	for i := range rs.Hosts {
		if rs.Hosts[i].Hostname == "db1" {
			fb = &rs.Hosts[i]
		}
	}
	if fb == nil || fb.LastBoot == nil || fb.LastBoot.Result != api.ResultFellBack || fb.LastBoot.To != ks.New.ABI || fb.LastBoot.Booted != ks.Old.ABI {
		t.Errorf("reboots view of db1 = %+v, want last boot fell back from %s to %s", fb, ks.New.ABI, ks.Old.ABI)
	} else {
		t.Logf("db1: %s -> %s: %s (%s)", fb.LastBoot.To, fb.LastBoot.Booted, fb.LastBoot.Result, fb.LastBoot.Reason)
	}
	if res, err := db.Run(ctx, "uname -r; grub-editenv list"); err != nil || !strings.HasPrefix(res.Stdout, ks.Old.ABI) ||
		!strings.Contains(res.Stdout, "saved_entry="+info.Default) {
		t.Errorf("db1 after the fallback: %q, %v; want %s running and still the default", res.Stdout, err, ks.Old.ABI)
	}

	// The web window opens at the next whole minute at least 20s away.
	open := time.Now().UTC().Add(20 * time.Second).Truncate(time.Minute).Add(time.Minute)
	f.setWindow(api.MaintenanceWindow{Name: "web", When: fmt.Sprintf("daily %s-%s UTC", open.Format("15:04"), open.Add(time.Hour).Format("15:04")),
		Selector: map[string]string{"group": "web"}, MaxUnavailable: "1"})
	t.Logf("web window opens at %s", open.Format(time.TimeOnly))
	wr := f.waitRollout(webRollout.ID, 30*time.Minute, "all 3 web hosts healthy on the new kernel", func(r api.KernelRollout) bool {
		return r.Counts[api.KernelHealthy] == 3
	})
	if wr.State != api.RolloutCompleted {
		t.Errorf("web rollout state %s, want completed", wr.State)
	}

	// From the consoles alone: inside the window, one host at a time.
	var downs []downtime
	for _, n := range []string{"web1", "web2", "web3"} {
		d := downtimes(n, hosts[n].Host)
		if len(d) != 1 || d[0].kernel != ks.New.ABI || d[0].end.IsZero() {
			t.Fatalf("%s reboots seen on its console: %+v, want one, into %s, and up again", n, d, ks.New.ABI)
		}
		if d[0].start.Before(open) {
			t.Errorf("%s went down at %s, before the window opened at %s", n, d[0].start.Format(time.TimeOnly), open.Format(time.TimeOnly))
		}
		downs = append(downs, d[0])
	}
	slices.SortFunc(downs, func(a, b downtime) int { return a.start.Compare(b.start) })
	for i := 1; i < len(downs); i++ {
		if downs[i].start.Before(downs[i-1].end) {
			t.Errorf("%s went down at %s while %s was still away (until %s): two hosts down at once", downs[i].host,
				downs[i].start.Format(time.TimeOnly), downs[i-1].host, downs[i-1].end.Format(time.TimeOnly))
		}
	}
	for _, d := range downs {
		t.Logf("%s down %s - %s (%v)", d.host, d.start.Format(time.TimeOnly), d.end.Format(time.TimeOnly), d.end.Sub(d.start).Round(time.Second))
	}
	newEntry := debvm.DefaultEntry(info.RootUUID, ks.New.ABI)
	for _, n := range []string{"web1", "web2", "web3"} {
		res, err := hosts[n].Run(ctx, "uname -r; grub-editenv list")
		if err != nil || !strings.HasPrefix(res.Stdout, ks.New.ABI) || !strings.Contains(res.Stdout, "saved_entry="+newEntry) {
			t.Errorf("%s after the update: %q, %v; want %s running and the default", n, res.Stdout, err, ks.New.ABI)
		}
	}

	// (c) web1: three kernels; cleanup --keep 2 leaves the running and the
	// fallback one.
	w1 := hosts["web1"]
	before := kernelsInstalled(t, ctx, w1)
	if len(before) != 3 {
		t.Fatalf("web1 kernels before the cleanup: %v, want 3 (the agent's own cleanup keeps 3)", before)
	}
	res, err := w1.Run(ctx, "stent kernel cleanup --keep 2 2>&1")
	if err != nil {
		t.Fatalf("stent kernel cleanup --keep 2: %v\n%s", err, res.Stdout)
	}
	after := kernelsInstalled(t, ctx, w1)
	want := []string{ks.Old.Package, ks.New.Package}
	slices.Sort(want)
	if !slices.Equal(after, want) {
		t.Errorf("web1 kernels after cleanup --keep 2: %v, want %v (output:\n%s)", after, want, res.Stdout)
	}
	t.Logf("whole scenario: %v", time.Since(start).Round(time.Second))
}
