package pkgmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/testenv"
)

// rootRunner runs the real apt-get, apt-cache, apt-mark and dpkg-query on
// a package database under root instead of the host's, through apt's and
// dpkg's own options for that.
type rootRunner struct {
	root  string
	inner Runner
}

func (r rootRunner) Run(ctx context.Context, name string, args []string, env []string) ([]byte, []byte, error) {
	var pre []string
	switch name {
	case "apt-get", "apt-cache", "apt-mark":
		for _, o := range []string{
			"Dir=" + r.root,
			"Dir::State::status=" + r.root + "/var/lib/dpkg/status",
			"DPkg::Options::=--root=" + r.root,
			"DPkg::Options::=--admindir=" + r.root + "/var/lib/dpkg",
			"DPkg::Options::=--force-script-chrootless",
			"APT::Sandbox::User=root",
		} {
			pre = append(pre, "-o", o)
		}
	case "dpkg-query":
		pre = []string{"--admindir=" + r.root + "/var/lib/dpkg"}
	}
	return r.inner.Run(ctx, name, append(pre, args...), env)
}

// requireAptTools skips (or under CI=true fails) when this machine cannot
// build and install Debian packages.
func requireAptTools(t *testing.T) {
	t.Helper()
	missing := testenv.MissingTools("apt-get", "apt-ftparchive", "dpkg-deb", "dpkg-query")
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if len(missing) > 0 {
		testenv.Unavailable(t, "real apt test needs %s", strings.Join(missing, ", "))
	}
}

type testDeb struct {
	name, version, depends, postinst string
	boot                             []string
}

// buildRepo builds the packages with dpkg-deb into a flat repository.
func buildRepo(t *testing.T, debs []testDeb) string {
	t.Helper()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	for _, d := range debs {
		pkg := filepath.Join(dir, "build", d.name+"_"+d.version)
		doc := filepath.Join(pkg, "usr/share/doc", d.name)
		must(t, os.MkdirAll(filepath.Join(pkg, "DEBIAN"), 0o755))
		must(t, os.MkdirAll(doc, 0o755))
		must(t, os.MkdirAll(repo, 0o755))
		must(t, os.WriteFile(filepath.Join(doc, "README"), []byte(d.name+"\n"), 0o644))
		ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: Stent tests <tests@stent.invalid>\nDescription: stent test package\nInstalled-Size: %d\n", d.name, d.version, 4*len(d.boot)+1)
		if d.depends != "" {
			ctl += "Depends: " + d.depends + "\n"
		}
		must(t, os.WriteFile(filepath.Join(pkg, "DEBIAN/control"), []byte(ctl), 0o644))
		if d.postinst != "" {
			must(t, os.WriteFile(filepath.Join(pkg, "DEBIAN/postinst"), []byte("#!/bin/sh\n"+d.postinst+"\n"), 0o755))
		}
		for _, f := range d.boot {
			must(t, os.MkdirAll(filepath.Join(pkg, "boot"), 0o755))
			must(t, os.WriteFile(filepath.Join(pkg, "boot", f), []byte(strings.Repeat("k", 4096)), 0o644))
		}
		if out, err := exec.Command("dpkg-deb", "--build", "-Zgzip", pkg, repo).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb: %v\n%s", err, out)
		}
	}
	cmd := exec.Command("apt-ftparchive", "packages", ".")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("apt-ftparchive: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(repo, "Packages"), out, 0o644))
	return repo
}

// emptyRoot makes an empty dpkg database and apt configuration whose one
// source is repo.
func emptyRoot(t *testing.T, repo string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc/apt/sources.list.d",
		"etc/apt/preferences.d", "etc/apt/apt.conf.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt", "boot", "usr/lib/modules"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "var/lib/dpkg/available"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte("deb [trusted=yes] file:"+repo+" ./\n"), 0o644))
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func kernelDebs(abi, version string) []testDeb {
	rel := "6.1.0-" + abi + "-amd64"
	return []testDeb{
		{name: "linux-image-" + rel, version: version, boot: []string{"vmlinuz-" + rel, "initrd.img-" + rel, "config-" + rel}},
		{name: "linux-headers-" + rel, version: version},
		{name: "linux-image-amd64", version: version, depends: "linux-image-" + rel + " (= " + version + ")"},
	}
}

// TestRealApt runs real apt-get, apt-mark and dpkg on a temporary root
// with a local repository of small kernel-shaped packages: install,
// upgrade with the metapackage, a hold, cleanup, and a package whose
// postinst fails.
func TestRealApt(t *testing.T) {
	requireAptTools(t)
	debs := append(kernelDebs("56", "6.1.192-2"), kernelDebs("57", "6.1.192-3")...)
	debs = append(debs, testDeb{name: "linux-image-6.1.0-58-amd64", version: "6.1.192-4",
		boot:     []string{"vmlinuz-6.1.0-58-amd64"},
		postinst: "echo 'update-initramfs: failed for /boot/initrd.img-6.1.0-58-amd64 with 1.' >&2; exit 1"})
	// A package that asks a question on its terminal, as a badly written
	// maintainer script does: it must get no answer (stdin is /dev/null)
	// and fail at once, not wait for a person.
	debs = append(debs, testDeb{name: "linux-image-6.1.0-59-amd64", version: "6.1.192-5",
		boot:     []string{"vmlinuz-6.1.0-59-amd64"},
		postinst: "printf 'Keep the old configuration? [y/N] '; if ! read answer; then echo 'postinst: no answer to the question' >&2; exit 1; fi"})
	repo := buildRepo(t, debs)
	root := emptyRoot(t, repo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	m := &Manager{Family: Apt, Runner: rootRunner{root, ExecRunner{Timeout: 2 * time.Minute}}, Root: root, Update: true,
		LockTimeout: 10 * time.Second, Running: "6.1.0-56-amd64", Progress: &progress}

	// A repository that cannot be reached: apt-get update's own message.
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte("deb [trusted=yes] http://127.0.0.1:9/ ./\n"), 0o644))
	if _, err := m.Upgrade(ctx, Target{}); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "Could not connect to 127.0.0.1:9") {
		t.Fatalf("Upgrade with an unreachable repository = %v, want ErrUnreachable with apt's message", err)
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte("deb [trusted=yes] file:"+repo+" ./\n"), 0o644))

	// The older kernel with its metapackage.
	res, err := m.Upgrade(ctx, Target{Version: "6.1.192-2", Meta: true})
	if err != nil {
		t.Fatalf("Upgrade to 6.1.192-2: %v\n%s", err, progress.String())
	}
	if got := changeList(res.Changes); got != "linux-image-6.1.0-56-amd64=6.1.192-2, linux-image-amd64=6.1.192-2" {
		t.Errorf("first install changes = %s", got)
	}
	// The headers come by hand, as on a host that builds modules.
	if _, _, err := m.Runner.Run(ctx, "apt-get", []string{"install", "-y", "-q", "linux-headers-6.1.0-56-amd64=6.1.192-2"}, aptEnv); err != nil {
		t.Fatal(err)
	}

	// A hold on the metapackage stops the upgrade before apt-get install.
	if out, errOut, err := m.Runner.Run(ctx, "apt-mark", []string{"hold", "linux-image-amd64"}, aptEnv); err != nil {
		t.Fatalf("apt-mark hold: %v %s %s", err, out, errOut)
	}
	if _, err := m.Upgrade(ctx, Target{Version: "6.1.192-3"}); !errors.Is(err, ErrHeld) {
		t.Fatalf("Upgrade with the metapackage held = %v, want ErrHeld", err)
	}
	if _, _, err := m.Runner.Run(ctx, "apt-mark", []string{"unhold", "linux-image-amd64"}, aptEnv); err != nil {
		t.Fatal(err)
	}

	// The newest through the metapackage (6.1.192-3, not the broken -4:
	// no metapackage depends on it).
	m.Update = false
	res, err = m.Upgrade(ctx, Target{Version: "6.1.192-3"})
	if err != nil {
		t.Fatalf("Upgrade to 6.1.192-3: %v", err)
	}
	if got := changeList(res.Changes); got != "linux-image-6.1.0-57-amd64=6.1.192-3, linux-image-amd64 6.1.192-2 -> 6.1.192-3" {
		t.Errorf("upgrade changes = %s", got)
	}
	if len(res.Files) != 2 || !res.Space.OK || !res.Space.SameFS {
		t.Errorf("upgrade result = files %v, space %+v", res.Files, res.Space)
	}
	t.Logf("space check: %+v", *res.Space)
	again, err := m.Upgrade(ctx, Target{Version: "6.1.192-3"})
	if err != nil || !again.Already {
		t.Errorf("Upgrade again = %+v, %v, want already installed", again, err)
	}

	ks, err := m.Kernels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 2 || ks[0].Release != "6.1.0-57-amd64" || !ks[0].MetaTarget || !ks[1].Running ||
		!slices.Equal(ks[1].Packages, []string{"linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64"}) {
		t.Errorf("Kernels = %+v", ks)
	}

	// A kernel whose postinst fails: apt's own message, the package left
	// half-configured and reported.
	res, err = m.Upgrade(ctx, Target{Release: "6.1.0-58-amd64"})
	if err == nil || !strings.Contains(err.Error(), "update-initramfs: failed for /boot/initrd.img-6.1.0-58-amd64") {
		t.Fatalf("Upgrade of the broken kernel = %v, want its postinst's message", err)
	}
	if res == nil || !slices.Equal(res.Incomplete, []string{"linux-image-6.1.0-58-amd64 (iF)"}) {
		t.Errorf("Incomplete = %v", res.Incomplete)
	}
	t.Logf("broken kernel: %v", err)
	if _, _, err := m.Runner.Run(ctx, "apt-get", []string{"purge", "-y", "-q", "linux-image-6.1.0-58-amd64"}, aptEnv); err != nil {
		t.Fatal(err)
	}

	// A package that asks a question: no answer, a quick failure with its
	// own words.
	start := time.Now()
	if _, err := m.Upgrade(ctx, Target{Release: "6.1.0-59-amd64"}); err == nil || !strings.Contains(err.Error(), "no answer to the question") {
		t.Fatalf("Upgrade of a package that asks a question = %v, want its postinst's message", err)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("a package asking a question held the upgrade for %v", took)
	}
	if _, _, err := m.Runner.Run(ctx, "apt-get", []string{"purge", "-y", "-q", "linux-image-6.1.0-59-amd64"}, aptEnv); err != nil {
		t.Fatal(err)
	}

	// Cleanup after a healthy boot into 6.1.0-57: 6.1.0-56 (image and
	// headers) goes with keep 1; the running kernel stays.
	m.Running = "6.1.0-57-amd64"
	removed, err := m.Cleanup(ctx, Policy{Keep: 1, KnownGood: "6.1.0-57-amd64", DryRun: true})
	if err != nil || len(removed) != 1 {
		t.Fatalf("Cleanup dry run = %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(root, "boot/vmlinuz-6.1.0-56-amd64")); err != nil {
		t.Errorf("dry run removed files: %v", err)
	}
	removed, err = m.Cleanup(ctx, Policy{Keep: 1, KnownGood: "6.1.0-57-amd64"})
	if err != nil || len(removed) != 1 || removed[0].Release != "6.1.0-56-amd64" {
		t.Fatalf("Cleanup = %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(root, "boot/vmlinuz-6.1.0-56-amd64")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/boot/vmlinuz-6.1.0-56-amd64 after cleanup: %v", err)
	}
	if ks, _ := m.Kernels(ctx); len(ks) != 1 || ks[0].Release != "6.1.0-57-amd64" {
		t.Errorf("Kernels after cleanup = %+v", ks)
	}
}
