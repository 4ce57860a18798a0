package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/debvm"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/pkgbuild"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// livePatchKit is what the kernel part needs from the live patch part to
// build a bundle for the Debian VM: the module built for abi and the key
// whose public half the guest trusts.
type livePatchKit struct {
	kernel  *kpkg.Kernel
	module  []byte // stent_lp_cmdline_v1.ko
	key     ed25519.PrivateKey
	pubFile []byte // the public key, for /etc/stent/keys
}

// kernelDemo is the "kernel updates" part: a real Debian 12 system booted
// from its own disk through GRUB, with Stent installed from its .deb.
type kernelDemo struct {
	*demo
	srv   *server
	work  string
	host  *debvm.Host
	ks    debvm.Kernels
	info  debvm.ImageInfo
	kit   livePatchKit
	group string // the host's group label value (group=web)

	feeds      []string  // --feed flags of every stent plan
	policy     string    // the policy file of every stent plan
	closedWhen string    // the group's window while the kernel installs: hours away
	openAt     time.Time // when the window opens for the reboot
}

const (
	kernelHost      = "demo1"
	guestServerPort = 8443
)

// kernelUpdates shows the whole strategy on one host exposed to a CVE: the
// plan, the live patch at once, the fixed kernel installed through apt and
// its reboot in the maintenance window, and the plan again.
func (d *demo) kernelUpdates(srv *server, work string, kit livePatchKit) error {
	kd := &kernelDemo{demo: d, srv: srv, work: filepath.Join(work, "kernel"), kit: kit, group: "web"}
	if err := os.MkdirAll(kd.work, 0o755); err != nil {
		return err
	}
	start := time.Now()
	if err := kd.setUp(); err != nil {
		return err
	}
	defer kd.host.Kill()
	before, err := kd.before()
	if err != nil {
		return err
	}
	planFile, err := kd.livePatch(before)
	if err != nil {
		return err
	}
	if err := kd.kernelInWindow(planFile); err != nil {
		return err
	}
	if err := kd.after(before); err != nil {
		return err
	}
	d.say("kernel updates part: %s", time.Since(start).Round(time.Second))
	return nil
}

// setUp builds (or takes from the cache) the Debian image, the apt
// repository with the newer kernel and Stent's .deb, and boots demo1.
func (kd *kernelDemo) setUp() error {
	ctx := kd.ctx
	kd.step("Kernel updates: a real Debian 12 system (systemd, apt, GRUB on its own disk) under QEMU")
	cache, err := kpkg.CacheDir()
	if err != nil {
		return err
	}
	ks, err := debvm.FetchKernels(ctx, cache)
	if err != nil {
		return fmt.Errorf("debian kernels: %w", err)
	}
	kd.ks = ks
	kd.say("the host runs %s (Debian %s); Debian's archive has the newer %s (%s)", ks.Old.ABI, ks.Old.Version, ks.New.ABI, ks.New.Version)
	t0 := time.Now()
	img, info, err := debvm.Image(ctx, cache, debvm.ImageOptions{Kernel: ks.Old, Older: ks.Older, Progress: &prefixWriter{w: kd.out, prefix: "    | "}})
	if err != nil {
		return fmt.Errorf("debian image: %w", err)
	}
	kd.info = info
	if info.Cached {
		kd.say("disk image %s (cached, built %s)", img, info.Built.Format(time.DateTime))
	} else {
		kd.say("built the disk image %s with mmdebstrap in %s", img, time.Since(t0).Round(time.Second))
	}
	repoDir, err := debvm.Repo(ctx, cache, ks.NewDebs())
	if err != nil {
		return err
	}
	port, stopRepo, err := debvm.ServeRepo(ctx, repoDir)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); stopRepo() }()
	kd.say("local apt repository with %s and linux-image-amd64 %s: %s, served on 127.0.0.1:%d",
		ks.New.Package, ks.New.Version, repoDir, port)
	kd.say("the guest's only apt source: %s", debvm.RepoSource)

	kd.step("Building Stent's .deb (as make package does) from the demo's binaries")
	res, err := pkgbuild.Build(ctx, pkgbuild.Options{OutDir: filepath.Join(kd.work, "pkg"), BinDir: kd.bin, Formats: []string{"deb"}})
	if err != nil {
		return fmt.Errorf("build the stent package: %w", err)
	}
	deb := res.Path(pkgbuild.Host, "deb")
	if deb == "" {
		return fmt.Errorf("pkgbuild wrote %+v, no host .deb", res.Packages)
	}
	if _, err := kd.run("dpkg-deb", "--info", deb); err != nil {
		return err
	}

	kd.step("Booting %s: Stent installed from the .deb, enrolled with the demo's stent-server, the agent run with --kernel-updates", kernelHost)
	out, err := kd.demo.host(kd.srv.env(), "stent", "fleet", "enroll-token", "--name", kernelHost, "--label", "group="+kd.group, "--json")
	if err != nil {
		return err
	}
	var tok struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
		return fmt.Errorf("enroll-token printed no secret: %v", err)
	}
	// The unit's own ExecStart is "stent agent $STENT_AGENT_OPTS" once
	// /etc/default/stent-agent ships; a drop-in works with either.
	dropIn := "[Service]\nExecStart=\nExecStart=/usr/sbin/stent agent --kernel-updates --health-delay 5s\n"
	script := fmt.Sprintf(`set -e
if [ ! -e /var/lib/stent/agent/credentials.json ]; then
  stent agent --server https://%s:%d --enroll %s --fingerprint %s --enroll-only
fi
systemctl start stent-agent
`, debvm.GuestHost, guestServerPort, tok.Secret, kd.srv.fingerprint)
	kd.say("the guest reaches stent-server at https://%s:%d (QEMU forwards it to %s) and the apt repository at %s:%d",
		debvm.GuestHost, guestServerPort, kd.srv.addr, debvm.GuestHost, debvm.RepoGuestPort)
	kd.say("booting through SeaBIOS and GRUB under software emulation: 1-3 minutes, more on a busy machine")
	t0 = time.Now()
	h, err := debvm.Boot(ctx, debvm.Config{Image: img, Name: kernelHost, Dir: filepath.Join(kd.work, kernelHost),
		Repo:     "127.0.0.1:" + strconv.Itoa(port),
		Forwards: []debvm.Forward{{GuestPort: guestServerPort, Host: kd.srv.addr}},
		Files: []debvm.File{
			{Path: "/etc/systemd/system/stent-agent.service.d/demo.conf", Data: []byte(dropIn)},
			{Path: "/etc/stent/keys/demo.pub", Data: kd.kit.pubFile},
		},
		Debs: []string{deb}, BootScript: script, BootTimeout: 20 * time.Minute})
	if err != nil {
		return err
	}
	kd.host = h
	if _, err := h.WaitConsole(ctx, regexp.MustCompile(`debvm: \S+ up on `), 20*time.Minute); err != nil {
		h.Kill()
		return err
	}
	kd.say("booted in %s; console log with timestamps: %s", time.Since(t0).Round(time.Second), h.ConsolePath())
	if err := kd.waitFor("demo1's agent checks in with its kernel", 10*time.Minute, func() (bool, string, error) {
		hs, err := kd.hosts()
		if err != nil {
			return false, "", err
		}
		for _, x := range hs {
			if x.Hostname == kernelHost && x.KernelRelease != "" && x.Online {
				return true, "online on " + x.KernelRelease, nil
			}
		}
		return false, "", nil
	}); err != nil {
		kd.on("systemctl status stent-agent --no-pager -n 20; cat /var/log/debvm-boot.log")
		return err
	}
	for _, cmd := range []string{"dpkg -l stent | tail -1", "systemctl is-active stent-agent", "uname -r", "grub-editenv list"} {
		if _, err := kd.onSettled(cmd); err != nil {
			return err
		}
	}
	_, err = kd.demo.host(kd.srv.env(), "stent", "fleet", "hosts")
	return err
}

// plan is one run of stent plan, its saved JSON and the host's part of it.
type plan struct {
	inv  string // the inventory it planned
	file string
	fp   *policy.FleetPlan
	host policy.HostPlan
}

// before takes demo1's inventory and plans with a real feed: the Debian
// changelog of the newer kernel's image package.
func (kd *kernelDemo) before() (*plan, error) {
	kd.step("Before: demo1's inventory, and stent plan with the changelog of Debian's newer kernel as the feed")
	inv, err := kd.inventory("before")
	if err != nil {
		return nil, err
	}
	changelog, err := kd.changelog()
	if err != nil {
		return nil, err
	}
	kd.feeds = []string{"--feed", "debian-changelog=" + changelog}
	kd.policy = filepath.Join(kd.work, "policy.json")
	// The operator's window, as the plan sees it: daily, an hour long,
	// hours from now. The same window goes to the server below.
	closed := time.Now().UTC().Add(10 * time.Hour)
	kd.closedWhen = fmt.Sprintf("daily %s-%s UTC", closed.Format("15:04"), closed.Add(time.Hour).Format("15:04"))
	pol := fmt.Sprintf(`{"schema_version": 1, "presets": ["default"], "windows": [{"name": "web", "when": %q, "hosts": ["demo*"]}]}`+"\n", kd.closedWhen)
	if err := os.WriteFile(kd.policy, []byte(pol), 0o644); err != nil {
		return nil, err
	}
	kd.say("policy %s: the default rules (urgent: CVSS >= 7 or, unscored, Debian urgency high, within 48 h) and a window:", kd.policy)
	fmt.Fprint(kd.out, indent(pol))
	p, err := kd.plan("before", inv)
	if err != nil {
		return nil, err
	}
	exposed := exposedCVEs(p.host)
	if len(exposed) == 0 {
		return nil, fmt.Errorf("the plan finds %s exposed to nothing the newer kernel fixes: expected at least one CVE fixed in %s (see %s)", kernelHost, kd.ks.New.Version, p.file)
	}
	kd.say("%s is exposed to %d CVE(s) that %s fixes: %s", kernelHost, len(exposed), kd.ks.New.Version, abbrevList(exposed, 8))
	return p, nil
}

// changelog extracts the newer image package's changelog.gz with dpkg-deb.
func (kd *kernelDemo) changelog() (string, error) {
	dir := filepath.Join(kd.work, "changelog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := kd.run("dpkg-deb", "-x", kd.ks.New.Deb, dir); err != nil {
		return "", err
	}
	doc := filepath.Join(dir, "usr/share/doc")
	// The image package's own folder; the metapackage's is a symlink to
	// it, so follow none and take the regular file.
	path := filepath.Join(doc, kd.ks.New.Package, "changelog.gz")
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		matches, _ := filepath.Glob(filepath.Join(doc, "linux-image-*", "changelog.gz"))
		path = ""
		for _, m := range matches {
			if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() {
				path = m
				break
			}
		}
		if path == "" {
			return "", fmt.Errorf("%s has no usr/share/doc/linux-image-*/changelog.gz (found %v)", kd.ks.New.Deb, matches)
		}
	}
	if _, err := kd.run("ls", "-l", path); err != nil {
		return "", err
	}
	if _, err := kd.run("sh", "-c", "zcat "+path+" | head -12"); err != nil {
		return "", err
	}
	n, err := countCVEs(path)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", fmt.Errorf("%s names no CVE: not a feed that can show an exposure", path)
	}
	kd.say("the changelog names %d distinct CVE ids across Debian's uploads of this kernel series", n)
	return path, nil
}

// countCVEs counts the distinct CVE ids in a gzipped changelog.
func countCVEs(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for _, id := range cveRE.FindAll(b, -1) {
		seen[string(id)] = true
	}
	return len(seen), nil
}

var cveRE = regexp.MustCompile(`CVE-\d{4}-\d{4,}`)

// livePatch publishes a live patch for the exposure through the server
// when the VM runs the kernel the demo's modules are built for, and plans
// again. It returns the plan the kernel rollout starts from.
func (kd *kernelDemo) livePatch(before *plan) (*plan, error) {
	kd.step("Live patch at once: the plan's first answer to an urgent CVE")
	if kd.ks.Old.ABI != kd.kit.kernel.Release || kd.ks.Old.Version != kd.kit.kernel.PackageVersion {
		kd.say("the demo's live patch modules are built for %s (%s), but demo1 runs %s (%s):",
			kd.kit.kernel.Release, kd.kit.kernel.PackageVersion, kd.ks.Old.ABI, kd.ks.Old.Version)
		kd.say("a module for another kernel build must not be loaded, so this step is skipped; the plan")
		kd.say("then asks for the kernel update (an emergency reboot if the CVE is urgent)")
		return before, nil
	}
	cves := exposedCVEs(before.host)
	kd.say("HONEST NOTE: the demo has no real fix for %s. Its live patch is a stand-in:", abbrevList(cves, 4))
	kd.say("the same stent_lp_cmdline_v1 module as above (it replaces cmdline_proc_show, so /proc/cmdline")
	kd.say("says it is patched), signed into a bundle whose manifest names those CVEs. A real one would be")
	kd.say("built by stent build from the upstream fix; everything else below is what Stent really does.")
	b, err := makeBundle(kd.kit.kernel, "stent_lp_cmdline_v1", 1, kd.kit.module, kd.kit.key, cves...)
	if err != nil {
		return nil, err
	}
	bundlePath := filepath.Join(kd.work, "cve-standin.bundle")
	if err := os.WriteFile(bundlePath, b, 0o644); err != nil {
		return nil, err
	}
	// The same patch as a livepatch feed entry, for stent plan.
	var lp vuln.LivePatch
	lp.Name, lp.CVEs, lp.Released = "stent_lp_cmdline_v1", cves, time.Now().UTC().Truncate(time.Second)
	lp.Kernel.Release, lp.Kernel.Version = kd.kit.kernel.Release, kd.kit.kernel.PackageVersion
	manifest := filepath.Join(kd.work, "livepatches.json")
	mb, _ := json.MarshalIndent([]vuln.LivePatch{lp}, "", "  ")
	if err := os.WriteFile(manifest, append(mb, '\n'), 0o644); err != nil {
		return nil, err
	}
	kd.say("the live patch feed (%s), what Stent can apply:", manifest)
	fmt.Fprint(kd.out, indent(string(mb)))
	kd.feeds = append(kd.feeds, "--feed", "livepatch="+manifest)
	if _, err := kd.plan("with-available-patch", before.inv); err != nil {
		return nil, err
	}

	kd.step("Publishing the live patch to group=%s: the server pushes it, demo1's agent verifies and applies it, no reboot", kd.group)
	t0 := time.Now()
	if _, err := kd.demo.host(kd.srv.env(), "stent", "publish", "--selector", "group="+kd.group, "--wait", "--timeout", "5m", bundlePath); err != nil {
		return nil, err
	}
	kd.say("published to applied and healthy in %s", time.Since(t0).Round(100*time.Millisecond))
	for _, cmd := range []string{"stent list", "cat /proc/cmdline"} {
		if _, err := kd.on(cmd); err != nil {
			return nil, err
		}
	}

	kd.step("The plan with the live patch applied: the CVE is covered now; the kernel update waits for the window")
	inv, err := kd.inventory("livepatched")
	if err != nil {
		return nil, err
	}
	p, err := kd.plan("livepatched", inv)
	if err != nil {
		return nil, err
	}
	n := p.host.Counts[vuln.FixedLivePatch]
	if n == 0 {
		return nil, fmt.Errorf("the plan after the live patch counts no CVE %s on %s (see %s)", vuln.FixedLivePatch, kernelHost, p.file)
	}
	kd.say("%d CVE(s) %s; the fixed kernel still has to be booted: only a reboot ends the exposure for good", n, vuln.FixedLivePatch)
	return p, nil
}

// kernelInWindow sets the group's window, starts the kernel rollout from
// the saved plan and follows the install, the wait and the reboot.
func (kd *kernelDemo) kernelInWindow(p *plan) error {
	env := kd.srv.env()
	kd.step("The fixed kernel in the window: the operator's window for group=%s on the server, then the rollout from the plan", kd.group)
	if _, err := kd.demo.host(env, "stent", "fleet", "windows", "set", kd.group, "--when", kd.closedWhen, "--selector", "group="+kd.group, "--max-unavailable", "1"); err != nil {
		return err
	}
	if _, err := kd.demo.host(env, "stent", "fleet", "kernels", "rollout", "--from-plan", p.file, "--release", kd.ks.New.Version+"="+kd.ks.New.ABI); err != nil {
		return err
	}
	out, err := kd.quietHost("stent", "fleet", "kernels", "--json")
	if err != nil {
		return err
	}
	var ros []api.KernelRollout
	if err := json.Unmarshal([]byte(out), &ros); err != nil {
		return fmt.Errorf("stent fleet kernels --json: %w", err)
	}
	var ro api.KernelRollout
	for _, r := range ros {
		if r.Release == kd.ks.New.ABI && r.State == api.RolloutRunning && r.CreatedAt.After(ro.CreatedAt) {
			ro = r
		}
	}
	if ro.ID == "" {
		return fmt.Errorf("stent fleet kernels lists no running rollout to %s after the rollout from the plan: %s", kd.ks.New.ABI, out)
	}
	if ro.Emergency {
		kd.say("the plan asks for an emergency reboot: demo1 reboots as soon as it has the kernel, not in the window")
	}
	kd.say("demo1's agent installs %s through apt now (2-4 minutes under emulation on an idle machine, much longer on a busy one); its window is closed", kd.ks.New.Package)
	t0 := time.Now()
	if err := kd.waitRollout(ro.ID, 40*time.Minute, "installed", func(r api.KernelRollout) bool {
		return r.Counts[api.KernelInstalled]+r.Counts[api.KernelRebooting]+r.Counts[api.KernelHealthy] > 0
	}); err != nil {
		return err
	}
	kd.say("installed in %s", time.Since(t0).Round(time.Second))
	if !ro.Emergency {
		if _, err := kd.demo.host(env, "stent", "fleet", "reboots"); err != nil {
			return err
		}
		if _, err := kd.on("dpkg-query -W 'linux-image-*' | sort; grub-editenv list"); err != nil {
			return err
		}
		if b := kd.host.Boots(); len(b) != 1 {
			return fmt.Errorf("demo1 rebooted before its window opened: boots %+v", b)
		}
		open := time.Now().UTC().Add(20 * time.Second).Truncate(time.Minute).Add(time.Minute)
		when := fmt.Sprintf("daily %s-%s UTC", open.Format("15:04"), open.Add(time.Hour).Format("15:04"))
		kd.step("The operator moves the window to open at %s (the next whole minute), for the demo", open.Format(time.TimeOnly))
		if _, err := kd.demo.host(env, "stent", "fleet", "windows", "set", kd.group, "--when", when, "--selector", "group="+kd.group, "--max-unavailable", "1"); err != nil {
			return err
		}
		if _, err := kd.demo.host(env, "stent", "fleet", "windows"); err != nil {
			return err
		}
		kd.openAt = open
	}
	since := len(kd.host.Console())
	if err := kd.waitRollout(ro.ID, 40*time.Minute, "healthy on the new kernel", func(r api.KernelRollout) bool {
		return r.Counts[api.KernelHealthy] > 0 || r.State == api.RolloutHalted
	}); err != nil {
		return err
	}
	kd.step("The reboot, from demo1's console (host clock, not Stent's word): GRUB's one-shot entry, then %s", kd.ks.New.ABI)
	kd.showReboot(since)
	boots := kd.host.Boots()
	last := boots[len(boots)-1]
	if len(boots) < 2 || last.Kernel != kd.ks.New.ABI {
		return fmt.Errorf("demo1's console shows boots %+v, want the last into %s", boots, kd.ks.New.ABI)
	}
	if !kd.openAt.IsZero() {
		down := last.Down
		if down.IsZero() {
			down = last.Time
		}
		if down.Before(kd.openAt) {
			return fmt.Errorf("demo1 went down at %s, before its window opened at %s", down.Format(time.TimeOnly), kd.openAt.Format(time.TimeOnly))
		}
		if last.Up.IsZero() {
			// The agent can report healthy before the boot's "up" line.
			if _, err := kd.host.WaitConsoleSince(kd.ctx, last.Line, regexp.MustCompile(`debvm: \S+ up on `), 10*time.Minute); err == nil {
				boots = kd.host.Boots()
				last = boots[len(boots)-1]
			}
		}
		up := "not seen yet"
		if !last.Up.IsZero() {
			up = fmt.Sprintf("%s (away %s)", last.Up.Format(time.TimeOnly), last.Up.Sub(down).Round(time.Second))
		}
		kd.say("window opened %s; demo1 went down %s, kernel %s started %s, up %s",
			kd.openAt.Format(time.TimeOnly), down.Format(time.TimeOnly), last.Kernel, last.Time.Format(time.TimeOnly), up)
	}
	for _, args := range [][]string{{"stent", "fleet", "kernels", ro.ID}, {"stent", "fleet", "reboots", "--all"}} {
		if _, err := kd.demo.host(env, args...); err != nil {
			return err
		}
	}
	// The server can count the host healthy from its check-in on the new
	// kernel a little before the agent has judged the boot and made the
	// kernel GRUB's default: give the agent that time.
	want := "saved_entry=" + debvm.DefaultEntry(kd.info.RootUUID, kd.ks.New.ABI)
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(3 * time.Second) {
		if out, err := kd.quiet("grub-editenv list"); err == nil && strings.Contains(out, want) {
			break
		}
	}
	for _, cmd := range []string{"uname -r", "grub-editenv list", "stent list"} {
		out, err := kd.onSettled(cmd)
		if err != nil {
			return err
		}
		// A healthy boot should have made the new kernel GRUB's default;
		// say so plainly when the guest shows otherwise.
		if cmd == "grub-editenv list" && !strings.Contains(out, want) {
			kd.say("\033[31mNOTE: the rollout says healthy, but GRUB's saved default is not %s (want %s): the next plain reboot would boot the old kernel\033[0m", kd.ks.New.ABI, want)
		}
	}
	kd.say("the live patch was for %s only: the agent did not re-apply it to %s, whose code has the fix", kd.ks.Old.ABI, kd.ks.New.ABI)
	return nil
}

// after plans again with a fresh inventory and compares.
func (kd *kernelDemo) after(before *plan) error {
	kd.step("After: a fresh inventory and stent plan, the same feeds")
	inv, err := kd.inventory("after")
	if err != nil {
		return err
	}
	p, err := kd.plan("after", inv)
	if err != nil {
		return err
	}
	kd.step("Before and after, per CVE state (%s)", kernelHost)
	fmt.Fprintf(kd.out, "    %-26s %8s %8s\n", "state", "before", "after")
	for _, s := range vuln.States {
		b, a := before.host.Counts[s], p.host.Counts[s]
		if a == 0 && b == 0 {
			continue
		}
		fmt.Fprintf(kd.out, "    %-26s %8d %8d\n", s, b, a)
	}
	fmt.Fprintf(kd.out, "    %-26s %8s %8s\n", "running kernel", before.host.Kernel.Release, p.host.Kernel.Release)
	fmt.Fprintf(kd.out, "    %-26s %8d %8d\n", "actions", len(before.host.Actions), len(p.host.Actions))
	if left := exposedCVEs(p.host); len(left) > 0 {
		return fmt.Errorf("after the reboot into %s the plan still finds %s exposed to %s (see %s)", kd.ks.New.ABI, kernelHost, abbrevList(left, 5), p.file)
	}
	kd.say("every CVE %s fixes is now %s: fixed by the running kernel", kd.ks.New.Version, vuln.FixedRunning)
	return nil
}

// inventory runs stent inventory --json in the guest and saves it here.
func (kd *kernelDemo) inventory(name string) (string, error) {
	res, err := kd.quiet("stent inventory --json")
	if err != nil {
		return "", err
	}
	path := filepath.Join(kd.work, "inventory-"+name+".json")
	if err := os.WriteFile(path, []byte(res), 0o644); err != nil {
		return "", err
	}
	kd.say("saved demo1's inventory to %s", path)
	if _, err := kd.on("stent inventory"); err != nil {
		return "", err
	}
	return path, nil
}

// plan runs stent plan on inv with the demo's feeds, shows it and saves
// its JSON.
func (kd *kernelDemo) plan(name, inv string) (*plan, error) {
	args := append([]string{"stent", "plan", "--inventory", inv, "--policy", kd.policy}, kd.feeds...)
	if _, err := kd.demo.host(nil, args...); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(kd.ctx, filepath.Join(kd.bin, "stent"), append(args[1:], "--json")...)
	js, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("stent plan --json: %w", err)
	}
	p := &plan{file: filepath.Join(kd.work, "plan-"+name+".json"), inv: inv}
	if err := os.WriteFile(p.file, js, 0o644); err != nil {
		return nil, err
	}
	if p.fp, err = policy.DecodePlan(p.file, bytes.NewReader(js)); err != nil {
		return nil, err
	}
	for _, h := range p.fp.Hosts {
		if h.Hostname == kernelHost {
			p.host = h
		}
	}
	if p.host.Hostname == "" {
		return nil, fmt.Errorf("plan %s has no host %s", p.file, kernelHost)
	}
	kd.say("saved as %s", p.file)
	return p, nil
}

// exposedCVEs lists the CVEs a plan finds the running kernel lacks the fix
// of (live patched or not), those a kernel update ends.
func exposedCVEs(h policy.HostPlan) []string {
	var out []string
	for _, f := range h.Exposure {
		switch f.State {
		case vuln.UpdateNeeded, vuln.FixedInstalled, vuln.FixedLivePatch:
			out = append(out, f.CVE)
		}
	}
	sort.Strings(out)
	return out
}

func abbrevList(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(" and %d more", len(list)-n)
}

// waitRollout polls a kernel rollout, printing each host state change,
// until ok says it is done.
func (kd *kernelDemo) waitRollout(id string, timeout time.Duration, what string, ok func(api.KernelRollout) bool) error {
	return kd.waitFor("kernel rollout "+id+": "+what, timeout, func() (bool, string, error) {
		out, err := kd.quietHost("stent", "fleet", "kernels", id, "--json")
		if err != nil {
			return false, "", err
		}
		var r api.KernelRollout
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return false, "", fmt.Errorf("stent fleet kernels %s --json: %w", id, err)
		}
		var st []string
		for _, t := range r.Targets {
			s := t.Hostname + ": " + t.State
			if t.Detail != "" {
				s += " (" + t.Detail + ")"
			}
			st = append(st, s)
		}
		for _, t := range r.Targets {
			if t.State == api.KernelFailed {
				return true, "", fmt.Errorf("kernel rollout %s: %s failed: %s", id, t.Hostname, t.Detail)
			}
		}
		if r.State == api.RolloutHalted {
			return true, "", fmt.Errorf("kernel rollout %s halted: %s", id, r.Halt)
		}
		return ok(r), "rollout " + r.State + "; " + strings.Join(st, "; "), nil
	})
}

// waitFor polls check every 3 s up to timeout, printing what it reports
// each time that changes, with the time.
func (kd *kernelDemo) waitFor(what string, timeout time.Duration, check func() (bool, string, error)) error {
	kd.say("waiting (up to %s) until %s", timeout, what)
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		done, status, err := check()
		if err != nil {
			return err
		}
		if status != "" && status != last {
			fmt.Fprintf(kd.out, "    [%s] %s\n", time.Now().Format(time.TimeOnly), status)
			last = status
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s (last: %s); console: %s", what, timeout, last, kd.conPath())
		}
		select {
		case <-kd.ctx.Done():
			return kd.ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

func (kd *kernelDemo) conPath() string {
	if kd.host == nil {
		return "-"
	}
	return kd.host.ConsolePath()
}

func (kd *kernelDemo) hosts() ([]api.Host, error) {
	out, err := kd.quietHost("stent", "fleet", "hosts", "--json")
	if err != nil {
		return nil, err
	}
	var hs []api.Host
	if err := json.Unmarshal([]byte(out), &hs); err != nil {
		return nil, fmt.Errorf("stent fleet hosts --json: %w", err)
	}
	return hs, nil
}

// rebootLineRE picks the console lines that tell the story of a reboot.
var rebootLineRE = regexp.MustCompile("debvm: \\S+ going down|\\] reboot: |GNU GRUB|Booting `|Linux version|debvm: \\S+ up on |Kernel panic")

// showReboot prints the console lines since index since that show the
// reboot, with the host's timestamps.
func (kd *kernelDemo) showReboot(since int) {
	lines := kd.host.Console()
	if since > len(lines) {
		since = 0
	}
	for _, l := range lines[since:] {
		if !rebootLineRE.MatchString(l.Text) {
			continue
		}
		text := strings.TrimSpace(l.Text)
		if i := strings.LastIndex(text, "Booting `"); i > 0 {
			text = text[i:] // after GRUB's menu drawing
		}
		if len(text) > 140 {
			text = text[:140] + "..."
		}
		fmt.Fprintf(kd.out, "    %s  %s\n", l.Time.Format("15:04:05.000"), text)
	}
}

// on runs a shell command in demo1 and shows it as a shell session would.
func (kd *kernelDemo) on(script string) (string, error) {
	fmt.Fprintf(kd.out, "\033[36m%s# %s\033[0m\n", kernelHost, script)
	ctx, cancel := context.WithTimeout(kd.ctx, 3*time.Minute)
	defer cancel()
	res, err := kd.host.Run(ctx, script)
	fmt.Fprint(kd.out, indent(res.Stderr))
	fmt.Fprint(kd.out, indent(res.Stdout))
	var ee *debvm.ExitError
	if err != nil && !errors.As(err, &ee) {
		return "", err
	}
	if err != nil {
		return res.Stdout, fmt.Errorf("%s: %s: exit %d", kernelHost, script, res.Exit)
	}
	return res.Stdout, nil
}

// onSettled is on for a command that may fail for a moment while the
// agent changes what it reads (grub-editenv list while the agent's
// grub-set-default rewrites grubenv): it tries quietly for up to 30 s
// first, then shows the command and its output.
func (kd *kernelDemo) onSettled(script string) (string, error) {
	for range 10 {
		if _, err := kd.quiet(script); err == nil {
			break
		}
		time.Sleep(3 * time.Second)
	}
	return kd.on(script)
}

// quiet runs a shell command in demo1 without showing it.
func (kd *kernelDemo) quiet(script string) (string, error) {
	ctx, cancel := context.WithTimeout(kd.ctx, 3*time.Minute)
	defer cancel()
	res, err := kd.host.Run(ctx, script)
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, res.Stderr)
	}
	return res.Stdout, nil
}

// quietHost runs a stent command on the host against the server without
// showing it (for polling).
func (kd *kernelDemo) quietHost(argv ...string) (string, error) {
	cmd := exec.CommandContext(kd.ctx, filepath.Join(kd.bin, argv[0]), argv[1:]...)
	cmd.Env = append(os.Environ(), kd.srv.env()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// run runs a host command (not a stent binary) and shows it.
func (kd *kernelDemo) run(argv ...string) (string, error) {
	return showRun(kd.out, exec.CommandContext(kd.ctx, argv[0], argv[1:]...), argv)
}

// prefixWriter prefixes every line written through it (the image build's
// progress).
type prefixWriter struct {
	w      interface{ Write([]byte) (int, error) }
	prefix string
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var buf bytes.Buffer
	for _, c := range b {
		if !p.mid {
			buf.WriteString(p.prefix)
			p.mid = true
		}
		buf.WriteByte(c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.w.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
