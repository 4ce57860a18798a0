package fleetvm

import (
	"context"
	"fmt"
	"net/http"
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
//   - db1, group db, whose window is hours away, runs the image's older
//     kernel with the newer build installed but not yet booted (as a host
//     that updated and waits for its reboot); an emergency kernel rollout
//     to that installed build reboots it at once, outside its window; the
//     build's first boot hangs (a unit that never finishes holds
//     sysinit.target, so the agent never starts); the watchdog the trial
//     boot armed resets it, GRUB's one-shot entry is spent, the host comes
//     back on the older kernel by itself, the agent reports the fallback
//     and the server halts that rollout. (db1 installs nothing through apt:
//     the three web hosts prove the install, and a fourth install of a
//     whole kernel package under emulation was the longest part of the
//     scenario.)
//   - every host also has an older third kernel (the image's): after the
//     update, stent kernel cleanup --keep 2 on web1 removes it and leaves
//     the running and the fallback kernel.
func TestFleetKernelUpdates(t *testing.T) {
	img, info, ks := debvm.TestImage(t)
	repo := debvm.TestRepo(t, ks.NewDebs())
	deb := stentDeb(t)
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
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
	// db1 moves to the image's older kernel at its first boot (GRUB's
	// saved default, one reboot) before it enrolls. Its trial boot of the
	// image's default kernel then hangs: a unit holds sysinit.target
	// forever on that kernel, once the marker says the host went back to
	// the older one, so the agent never starts (as a mount that never
	// finishes would). Only the watchdog armed for the trial boot brings
	// the host back.
	hang := "[Unit]\nDescription=fleetvm: the trial boot hangs on purpose\nDefaultDependencies=no\nConditionKernelVersion=" + ks.Old.ABI +
		"\nConditionPathExists=/var/lib/fleetvm/on-older\nBefore=sysinit.target\n\n[Service]\nType=oneshot\nExecStart=/bin/sleep infinity\nTimeoutStartSec=infinity\n"
	extra := map[string][]debvm.File{"db1": {
		{Path: "/etc/systemd/system/fleetvm-hang.service", Data: []byte(hang)},
		{Path: "/etc/systemd/system/sysinit.target.d/fleetvm-hang.conf", Data: []byte("[Unit]\nWants=fleetvm-hang.service\n")},
	}}
	prelude := map[string]string{"db1": fmt.Sprintf(`if [ "$(uname -r)" = %s ] && [ ! -e /var/lib/fleetvm/on-older ]; then
  mkdir -p /var/lib/fleetvm && touch /var/lib/fleetvm/on-older
  grub-set-default %s
  systemctl reboot
  exit 0
fi
`, ks.Old.ABI, "'"+debvm.DefaultEntry(info.RootUUID, ks.Older.ABI)+"'")}
	mctx, stopMonitor := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() { f.monitor(mctx); close(monitorDone) }()
	defer func() { stopMonitor(); <-monitorDone }()
	hosts := f.bootHosts(ctx, img, repo, deb, names, tokens, extra, prelude)
	t.Logf("4 hosts booted, Stent installed from %s and enrolled: %v", deb, time.Since(start).Round(time.Second))

	// The emergency: db1 reboots now, outside its window. The monthly
	// update of the web group starts at the same time: its hosts install
	// now and reboot in their window.
	deadline := time.Now().Add(time.Hour)
	var dbRollout, webRollout api.KernelRollout
	f.do(http.MethodPost, api.PathKernelRollouts, api.KernelRolloutRequest{Release: ks.Old.ABI, Version: ks.Old.Version,
		Packages: []string{ks.Old.Package}, Selector: map[string]string{"group": "db"}, Emergency: true,
		Deadline: &deadline, Reason: "CVE-2026-0001 (CVSS 9.8), no live patch"}, &dbRollout)
	f.do(http.MethodPost, api.PathKernelRollouts, api.KernelRolloutRequest{Release: ks.New.ABI, Version: ks.New.Version,
		Packages: []string{ks.New.Package, "linux-image-amd64"}, Selector: map[string]string{"group": "web"},
		Reason: "monthly kernel update"}, &webRollout)

	// Every web host installs the kernel through apt and then waits: its
	// window is closed.
	f.waitRollout(webRollout.ID, 40*time.Minute, "all 3 web hosts installed", func(r api.KernelRollout) bool {
		return r.Counts[api.KernelInstalled] == 3
	})
	t.Logf("web hosts installed %s through apt: %v", ks.New.ABI, time.Since(start).Round(time.Second))
	for _, n := range []string{"web1", "web2", "web3"} {
		if b := hosts[n].Boots(); len(b) != 1 {
			t.Fatalf("%s rebooted before its window opened: boots %+v", n, b)
		}
	}

	// The web window opens at the next whole minute at least 20s away.
	open := time.Now().UTC().Add(20 * time.Second).Truncate(time.Minute).Add(time.Minute)
	f.setWindow(api.MaintenanceWindow{Name: "web", When: fmt.Sprintf("daily %s-%s UTC", open.Format("15:04"), open.Add(time.Hour).Format("15:04")),
		Selector: map[string]string{"group": "web"}, MaxUnavailable: "1"})
	t.Logf("web window opens at %s", open.Format(time.TimeOnly))

	// The emergency host went ahead, fell back by itself, and its rollout
	// is halted.
	dr := f.waitRollout(dbRollout.ID, 20*time.Minute, "halted by db1's fallback", func(r api.KernelRollout) bool {
		return r.State == api.RolloutHalted
	})
	if !strings.Contains(dr.Halt, "db1") {
		t.Errorf("db rollout halt reason %q, want it to name db1", dr.Halt)
	}
	db := hosts["db1"]
	boots := db.Boots()
	// Its boots: the image's default at the first boot, the older kernel
	// it moved to, the trial of the default (hangs), the older again.
	if len(boots) != 4 || boots[0].Kernel != ks.Old.ABI || boots[1].Kernel != ks.Older.ABI || boots[2].Kernel != ks.Old.ABI || boots[3].Kernel != ks.Older.ABI {
		t.Fatalf("db1 boots %+v, want %s, %s (its start), then %s (the trial, hangs), then back on %s", boots, ks.Old.ABI, ks.Older.ABI, ks.Old.ABI, ks.Older.ABI)
	}
	trial, back := boots[2], boots[3]
	// The way back was the watchdog armed for the trial boot: softdog's
	// reset, on the console between the hung boot and the next one.
	if cons := db.Console(); !slices.ContainsFunc(cons[trial.Line:back.Line], func(l debvm.Line) bool { return strings.Contains(l.Text, "softdog") }) {
		t.Errorf("db1's console shows no softdog reset between the trial boot of %s and the next; its end:\n%s", ks.Old.ABI, db.ConsoleTail(30))
	} else {
		t.Logf("db1: %s hung on its trial boot (%s); the watchdog reset it and %s came back at %s", ks.Old.ABI,
			trial.Time.Format(time.TimeOnly), back.Kernel, back.Time.Format(time.TimeOnly))
	}
	if trial.Time.After(closed) {
		t.Errorf("db1's emergency reboot at %s was not before its window", trial.Time)
	}
	// The outcome of the boot comes with db1's next check-in (every 10 s
	// here), after the report that halted the rollout.
	var fb *api.HostReboot
	for wait := time.Now().Add(2 * time.Minute); ; time.Sleep(2 * time.Second) {
		fb = nil
		rs := f.reboots()
		for i := range rs.Hosts {
			if rs.Hosts[i].Hostname == "db1" {
				fb = &rs.Hosts[i]
			}
		}
		if (fb != nil && fb.LastBoot != nil) || time.Now().After(wait) {
			break
		}
	}
	if fb == nil || fb.LastBoot == nil || fb.LastBoot.Result != api.ResultFellBack || fb.LastBoot.To != ks.Old.ABI || fb.LastBoot.Booted != ks.Older.ABI {
		t.Errorf("reboots view of db1 = %+v, want last boot fell back from %s to %s", fb, ks.Old.ABI, ks.Older.ABI)
	} else {
		t.Logf("db1: %s -> %s: %s (%s)", fb.LastBoot.To, fb.LastBoot.Booted, fb.LastBoot.Result, fb.LastBoot.Reason)
	}
	if res, err := db.Run(ctx, "uname -r; grub-editenv list"); err != nil || !strings.HasPrefix(res.Stdout, ks.Older.ABI) ||
		!strings.Contains(res.Stdout, "saved_entry="+debvm.DefaultEntry(info.RootUUID, ks.Older.ABI)) {
		t.Errorf("db1 after the fallback: %q, %v; want %s running and still the default", res.Stdout, err, ks.Older.ABI)
	}

	wr := f.waitRollout(webRollout.ID, 20*time.Minute, "all 3 web hosts healthy on the new kernel", func(r api.KernelRollout) bool {
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

	// (c) web1: three kernels (the image's two and the new one); cleanup
	// --keep 2 leaves the running and the fallback one.
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
