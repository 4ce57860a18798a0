package pkgbuild

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/testenv"
)

// chrootTar is a Debian 12 minbase system with systemd (for systemctl in
// the rpm scriptlets), made by mmdebstrap once and kept in the cache.
const chrootTar = "pkgbuild/bookworm-minbase-systemd.tar"

// scratchRoot unpacks the cached Debian system into a fresh folder, making
// the cache entry first if needed (about 90 s, from Debian's mirror).
func scratchRoot(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("installs packages into a Debian chroot; skipped under -short")
	}
	testenv.NeedRoot(t, "installing into a chroot")
	testenv.NeedTools(t, "mmdebstrap", "chroot", "tar")
	cache, err := kpkg.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(cache, chrootTar)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	unlock, err := kpkg.Lock(ctx, tarPath+".lock")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tarPath); err != nil {
		start := time.Now()
		tmp := tarPath + ".tmp.tar"
		out, err := exec.CommandContext(ctx, "mmdebstrap", "--quiet", "--variant=minbase",
			"--include=systemd,init-system-helpers", "bookworm", tmp).CombinedOutput()
		if err != nil {
			unlock()
			os.Remove(tmp)
			t.Fatalf("mmdebstrap: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, tarPath); err != nil {
			unlock()
			t.Fatal(err)
		}
		t.Logf("made %s in %v", tarPath, time.Since(start).Round(time.Second))
	}
	unlock()
	root := t.TempDir()
	run(t, "tar", "-xf", tarPath, "-C", root)
	return root
}

// inRoot runs a command chrooted into root and returns its output.
func inRoot(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "chroot", append([]string{root}, args...)...)
}

// copyIn copies host file src to root/tmp and returns its path in root.
func copyIn(t *testing.T, root, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := "/tmp/" + filepath.Base(src)
	if err := os.WriteFile(filepath.Join(root, dst), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// wantedLinks lists the enable links the host package's units ask for in
// their [Install] sections, read from the units themselves: a unit added
// to deploy/systemd without its name in the maintainer scripts fails here.
func wantedLinks(t *testing.T, name string) []string {
	t.Helper()
	src, err := sourceDir()
	if err != nil {
		t.Fatal(err)
	}
	units, _ := filepath.Glob(filepath.Join(src, "deploy", "systemd", "stent-*"))
	var links []string
	for _, u := range units {
		base := filepath.Base(u)
		if strings.HasSuffix(base, ".go") || (base == "stent-server.service") != (name == Server) {
			continue
		}
		f, err := os.Open(u)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if target, ok := strings.CutPrefix(sc.Text(), "WantedBy="); ok {
				for _, tg := range strings.Fields(target) {
					links = append(links, "/etc/systemd/system/"+tg+".wants/"+base)
				}
			}
		}
		f.Close()
	}
	if len(links) == 0 {
		t.Fatalf("no unit of %s has WantedBy=", name)
	}
	return links
}

// checkLinks checks that each link exists in root and points at the unit
// in UnitDir, or, with present false, that it does not exist.
func checkLinks(t *testing.T, root, when string, links []string, present bool) {
	t.Helper()
	for _, l := range links {
		target, err := os.Readlink(filepath.Join(root, l))
		switch {
		case present && err != nil:
			t.Errorf("%s: unit not enabled: %v", when, err)
		case present && target != UnitDir+"/"+filepath.Base(l):
			t.Errorf("%s: %s -> %s, want %s", when, l, target, UnitDir+"/"+filepath.Base(l))
		case !present && err == nil:
			t.Errorf("%s: %s still exists", when, l)
		}
	}
}

func exists(root, p string) bool {
	_, err := os.Lstat(filepath.Join(root, p))
	return err == nil
}

// state is what an enrolled host with a persisted patch and an operator's
// key has; an upgrade and a removal keep it, a purge deletes it.
var state = map[string]string{
	"/var/lib/stent/patches/fix.bundle":     "bundle bytes",
	"/var/lib/stent/agent/credentials.json": `{"credential":"sth_x"}`,
	"/var/lib/stent/guard/fix.json":         `{"boot_id":"b"}`,
	"/etc/stent/keys/ops.pub":               "ed25519 key",
	"/var/lib/stent-server/admin.token":     "sta_x",
	"/var/lib/stent-server/tls/cert.pem":    "cert",
}

func writeState(t *testing.T, root string) {
	t.Helper()
	for p, data := range state {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func checkState(t *testing.T, root, when, prefix string, kept bool) {
	t.Helper()
	for p, data := range state {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, p))
		switch {
		case kept && (err != nil || string(b) != data):
			t.Errorf("%s: %s = %q, %v, want %q kept", when, p, b, err, data)
		case !kept && err == nil:
			t.Errorf("%s: %s still exists", when, p)
		}
	}
}

// checkInstalled checks files, modes and the binaries' version in root.
func checkInstalled(t *testing.T, root, when, version string) {
	t.Helper()
	for _, e := range append(append([]entry{}, wantHost...), wantServer...) {
		st, err := os.Stat(filepath.Join(root, e.path))
		if err != nil {
			t.Errorf("%s: %v", when, err)
			continue
		}
		if got := st.Mode().String(); got != e.mode {
			t.Errorf("%s: %s mode %s, want %s", when, e.path, got, e.mode)
		}
	}
	if got := inRoot(t, root, HostBin, "--version"); !strings.Contains(got, version) {
		t.Errorf("%s: stent --version = %q, want %s", when, got, version)
	}
	if got := inRoot(t, root, ServerBin, "--version"); !strings.Contains(got, version) {
		t.Errorf("%s: stent-server --version = %q, want %s", when, got, version)
	}
	// stent runs stent-tools from /usr/lib/stent for the agent.
	if got := inRoot(t, root, HostBin, "agent", "--help"); !strings.Contains(got, "--enroll") {
		t.Errorf("%s: stent agent --help (through stent-tools) = %q", when, got)
	}
}

// TestDebInstall installs the .deb packages into a Debian 12 chroot and
// runs their maintainer scripts for real: install, an upgrade to the next
// release (keeping a unit the operator disabled disabled, state, keys and
// an edited conffile), removal, purge.
func TestDebInstall(t *testing.T) {
	testenv.NeedTools(t, "dpkg")
	v1, v2 := built(t)
	root := scratchRoot(t)
	hostLinks, serverLinks := wantedLinks(t, Host), wantedLinks(t, Server)

	inRoot(t, root, "dpkg", "-i", copyIn(t, root, v1.Path(Host, "deb")), copyIn(t, root, v1.Path(Server, "deb")))
	checkInstalled(t, root, "install 1.0.0", "1.0.0")
	checkLinks(t, root, "install", append(hostLinks, serverLinks...), true)
	if got := inRoot(t, root, "dpkg-query", "-W", "-f=${Conffiles}", Server); !strings.Contains(got, ServerDefaults) {
		t.Errorf("dpkg-query conffiles of %s = %q, want %s", Server, got, ServerDefaults)
	}

	// The host enrolls, persists a patch, gets a key; the operator turns
	// the confirm timer off and edits the server's settings.
	writeState(t, root)
	inRoot(t, root, "systemctl", "disable", "stent-confirm.timer")
	timer := "/etc/systemd/system/timers.target.wants/stent-confirm.timer"
	edited := "STENT_SERVER_LISTEN=:8443\n"
	if err := os.WriteFile(filepath.Join(root, ServerDefaults), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}

	inRoot(t, root, "dpkg", "-i", copyIn(t, root, v2.Path(Host, "deb")), copyIn(t, root, v2.Path(Server, "deb")))
	checkInstalled(t, root, "upgrade to 1.1.0", "1.1.0")
	var others []string
	for _, l := range hostLinks {
		if l != timer {
			others = append(others, l)
		}
	}
	checkLinks(t, root, "upgrade", append(others, serverLinks...), true)
	checkLinks(t, root, "upgrade after the operator disabled it", []string{timer}, false)
	checkState(t, root, "upgrade", "/", true)
	if b, _ := os.ReadFile(filepath.Join(root, ServerDefaults)); string(b) != edited {
		t.Errorf("upgrade replaced the edited %s with %q", ServerDefaults, b)
	}

	inRoot(t, root, "dpkg", "-r", Host, Server)
	for _, p := range []string{HostBin, ToolsBin, ServerBin, UnitDir + "/stent-agent.service"} {
		if exists(root, p) {
			t.Errorf("remove: %s still exists", p)
		}
	}
	checkState(t, root, "remove", "/", true)
	if got := inRoot(t, root, "dpkg-query", "-W", "-f=${Status}", Host); got != "deinstall ok config-files" {
		t.Errorf("remove: status of %s = %q, want config-files", Host, got)
	}

	inRoot(t, root, "dpkg", "-P", Host, Server)
	checkState(t, root, "purge", "/", false)
	checkLinks(t, root, "purge", append(hostLinks, serverLinks...), false)
	for _, p := range []string{"/etc/stent", "/var/lib/stent", "/var/lib/stent-server", ServerDefaults,
		"/var/lib/systemd/deb-systemd-helper-enabled/stent-agent.service.dsh-also"} {
		if exists(root, p) {
			t.Errorf("purge: %s still exists", p)
		}
	}
}

// TestRPMInstall installs the .rpm packages with rpm --root into the same
// kind of chroot (rpm runs the scriptlets inside it, with systemd's
// systemctl): install, upgrade keeping a disabled unit disabled and the
// state, erase disabling the units and keeping the state.
func TestRPMInstall(t *testing.T) {
	testenv.NeedTools(t, "rpm")
	v1, v2 := built(t)
	root := scratchRoot(t)
	hostLinks, serverLinks := wantedLinks(t, Host), wantedLinks(t, Server)
	// Debian's rpm refuses to install unless told it is not the system's
	// package manager (--force-debian); --nodeps: Debian's packages are
	// not in the chroot's rpm database.
	rpm := func(args ...string) {
		t.Helper()
		run(t, "rpm", append([]string{"--root", root, "--force-debian", "--nodeps"}, args...)...)
	}
	run(t, "rpm", "--root", root, "--initdb")

	rpm("-i", v1.Path(Host, "rpm"), v1.Path(Server, "rpm"))
	checkInstalled(t, root, "install 1.0.0", "1.0.0")
	checkLinks(t, root, "install", append(hostLinks, serverLinks...), true)

	writeState(t, root)
	inRoot(t, root, "systemctl", "disable", "stent-confirm.timer")
	timer := "/etc/systemd/system/timers.target.wants/stent-confirm.timer"

	rpm("-U", v2.Path(Host, "rpm"), v2.Path(Server, "rpm"))
	checkInstalled(t, root, "upgrade to 1.1.0", "1.1.0")
	if got := run(t, "rpm", "--root", root, "-q", Host); strings.TrimSpace(got) != "stent-1.1.0-1.x86_64" {
		t.Errorf("upgrade: rpm -q %s = %q", Host, got)
	}
	checkLinks(t, root, "upgrade after the operator disabled it", []string{timer}, false)
	checkLinks(t, root, "upgrade", serverLinks, true)
	checkState(t, root, "upgrade", "/", true)

	rpm("-e", Host, Server)
	for _, p := range []string{HostBin, ToolsBin, ServerBin} {
		if exists(root, p) {
			t.Errorf("erase: %s still exists", p)
		}
	}
	checkLinks(t, root, "erase", append(hostLinks, serverLinks...), false)
	checkState(t, root, "erase (rpm has no purge)", "/", true)
}
