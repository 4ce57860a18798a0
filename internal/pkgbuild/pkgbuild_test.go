package pkgbuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/testenv"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Two releases, packaged once for all tests: v1.0.0 and v1.1.0, each with
// binaries compiled and stamped by Build itself.
var (
	buildOnce        sync.Once
	builtV1, builtV2 Result
	buildErr         error
	buildDir         string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func built(t *testing.T) (v1, v2 Result) {
	t.Helper()
	if testing.Short() {
		t.Skip("compiles the binaries and packages them; skipped under -short")
	}
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if buildDir, buildErr = os.MkdirTemp("", "pkgbuild-test"); buildErr != nil {
			return
		}
		start := time.Now()
		if builtV1, buildErr = Build(ctx, Options{OutDir: filepath.Join(buildDir, "v1"), Version: "v1.0.0"}); buildErr != nil {
			return
		}
		builtV2, buildErr = Build(ctx, Options{OutDir: filepath.Join(buildDir, "v2"), Version: "v1.1.0"})
		t.Logf("built two releases of %d packages in %v", len(builtV1.Packages), time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtV1, builtV2
}

// entry is a file of a package as dpkg-deb or rpm lists it.
type entry struct {
	mode string // ls -l style: -rwxr-xr-x, drwxr-xr-x
	path string
}

var wantHost = []entry{
	{"-rw-r--r--", "/etc/default/stent-agent"},
	{"drwxr-xr-x", "/etc/stent"},
	{"drwxr-xr-x", "/etc/stent/keys"},
	{"-rw-r--r--", "/lib/systemd/system/stent-agent.service"},
	{"-rw-r--r--", "/lib/systemd/system/stent-boot-watchdog.service"},
	{"-rw-r--r--", "/lib/systemd/system/stent-confirm.service"},
	{"-rw-r--r--", "/lib/systemd/system/stent-confirm.timer"},
	{"-rw-r--r--", "/lib/systemd/system/stent-load-persisted.service"},
	{"-rw-r--r--", "/lib/systemd/system/stent-shutdown-mark.service"},
	{"-rwxr-xr-x", "/usr/lib/stent/stent-tools"},
	{"-rwxr-xr-x", "/usr/sbin/stent"},
	{"-rw-r--r--", "/usr/share/doc/stent/README.md"},
}

var wantServer = []entry{
	{"-rw-r--r--", "/etc/default/stent-server"},
	{"-rw-r--r--", "/lib/systemd/system/stent-server.service"},
	{"-rwxr-xr-x", "/usr/bin/stent-server"},
}

// filter keeps the entries that the want lists speak about: what the
// package adds, without the parent folders (/usr, /lib/systemd) and with
// docs/*.md reduced to README.md.
func filter(es []entry) []entry {
	var out []entry
	for _, e := range es {
		p := e.path
		switch {
		case strings.HasPrefix(p, "/usr/share/doc/stent/") && p != "/usr/share/doc/stent/README.md":
		case e.mode[0] == 'd' && !strings.HasPrefix(p, "/etc/stent"):
		default:
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.path, b.path) })
	return out
}

func TestDebContents(t *testing.T) {
	testenv.NeedTools(t, "dpkg-deb")
	v1, _ := built(t)
	for _, tt := range []struct {
		name  string
		want  []entry
		conff string
	}{{Host, wantHost, AgentDefaults}, {Server, wantServer, ServerDefaults}} {
		deb := v1.Path(tt.name, "deb")
		if want := tt.name + "_1.0.0_amd64.deb"; filepath.Base(deb) != want {
			t.Errorf("%s deb is %s, want %s", tt.name, deb, want)
		}
		var got []entry
		for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 || !strings.HasSuffix(f[1], "root/root") && f[1] != "root/root" {
				t.Errorf("%s: unexpected line %q (want root/root files)", deb, line)
				continue
			}
			got = append(got, entry{f[0], strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")})
		}
		if diff := cmp.Diff(tt.want, filter(got), cmp.AllowUnexported(entry{})); diff != "" {
			t.Errorf("dpkg-deb --contents %s (-want +got):\n%s", deb, diff)
		}

		for field, want := range map[string]string{"Package": tt.name, "Version": "1.0.0", "Architecture": "amd64", "Depends": "init-system-helpers", "Section": "admin"} {
			if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, field)); got != want {
				t.Errorf("dpkg-deb --field %s %s = %q, want %q", deb, field, got, want)
			}
		}
		ctrl := t.TempDir()
		run(t, "dpkg-deb", "--control", deb, ctrl)
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			p := filepath.Join(ctrl, s)
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s has no %s: %v", deb, s, err)
				continue
			}
			if st.Mode().Perm() != 0o755 {
				t.Errorf("%s %s mode %v, want 0755", deb, s, st.Mode().Perm())
			}
			run(t, "sh", "-n", p)
			if b, _ := os.ReadFile(p); !strings.HasPrefix(string(b), "#!/bin/sh\n") {
				t.Errorf("%s %s does not start with #!/bin/sh", deb, s)
			}
		}
		conffiles, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
		if got := strings.TrimSpace(string(conffiles)); got != tt.conff {
			t.Errorf("%s conffiles = %q, want %q", deb, got, tt.conff)
		}
	}
}

func TestRPMContents(t *testing.T) {
	testenv.NeedTools(t, "rpm")
	v1, _ := built(t)
	for _, tt := range []struct {
		name  string
		want  []entry
		conff string
	}{{Host, wantHost, AgentDefaults}, {Server, wantServer, ServerDefaults}} {
		rpm := v1.Path(tt.name, "rpm")
		if want := tt.name + "-1.0.0-1.x86_64.rpm"; filepath.Base(rpm) != want {
			t.Errorf("%s rpm is %s, want %s", tt.name, rpm, want)
		}
		// --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink
		var got []entry
		var conf []string
		for _, line := range strings.Split(strings.TrimSpace(run(t, "rpm", "-qp", "--dump", rpm)), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || f[5] != "root" || f[6] != "root" {
				t.Errorf("%s: unexpected line %q (want root/root files)", rpm, line)
				continue
			}
			got = append(got, entry{modeString(t, f[4]), f[0]})
			if f[7] == "1" {
				conf = append(conf, f[0])
			}
		}
		if diff := cmp.Diff(tt.want, filter(got), cmp.AllowUnexported(entry{})); diff != "" {
			t.Errorf("rpm -qp --dump %s (-want +got):\n%s", rpm, diff)
		}
		if got := strings.Join(conf, " "); got != tt.conff {
			t.Errorf("%s config files = %q, want %q", rpm, got, tt.conff)
		}
		if got := run(t, "rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}", rpm); got != tt.name+" 1.0.0 1 x86_64" {
			t.Errorf("%s: name version release arch = %q", rpm, got)
		}
		if got := run(t, "rpm", "-qpl", rpm); !strings.Contains(got, "/lib/systemd/system/") {
			t.Errorf("rpm -qpl %s lists no unit:\n%s", rpm, got)
		}
		scripts := run(t, "rpm", "-qp", "--scripts", rpm)
		for _, tag := range []string{"POSTIN", "PREUN", "POSTUN"} {
			body := run(t, "rpm", "-qp", "--queryformat", "%{"+tag+"}", rpm)
			if body == "(none)" || !strings.Contains(scripts, body) {
				t.Errorf("%s has no %s scriptlet", rpm, tag)
				continue
			}
			p := filepath.Join(t.TempDir(), tag)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "sh", "-n", p)
		}
	}
}

// modeString turns rpm's octal mode (0100755) into ls -l style.
func modeString(t *testing.T, octal string) string {
	t.Helper()
	var m uint32
	for _, c := range octal {
		m = m*8 + uint32(c-'0')
	}
	s := []byte("-rwxrwxrwx")
	if m&0o170000 == 0o040000 {
		s[0] = 'd'
	}
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) == 0 {
			s[i+1] = '-'
		}
	}
	return string(s)
}

// TestBuildBadInput: what is missing is named and nothing is written.
func TestBuildBadInput(t *testing.T) {
	out := t.TempDir()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "stent"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err := Build(ctx, Options{OutDir: out, BinDir: bin, Version: "1.0.0"})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(bin, "stent-tools")) || !strings.Contains(err.Error(), filepath.Join(bin, "stent-server")) {
		t.Errorf("Build without stent-tools and stent-server = %v, want an error naming both", err)
	}
	if _, err := Build(ctx, Options{OutDir: out, BinDir: bin, Version: "release one"}); err == nil || !strings.Contains(err.Error(), "release one") {
		t.Errorf("Build with a bad version = %v, want an error naming it", err)
	}
	if _, err := Build(ctx, Options{OutDir: out, BinDir: bin, Version: "1.0.0", Formats: []string{"apk"}}); err == nil || !strings.Contains(err.Error(), "apk") {
		t.Errorf("Build of apk = %v, want an error naming the format", err)
	}
	if _, err := Build(ctx, Options{BinDir: bin, Version: "1.0.0"}); err == nil {
		t.Error("Build without OutDir succeeded")
	}
	if left, _ := os.ReadDir(out); len(left) > 0 {
		t.Errorf("failed builds left %d files in %s", len(left), out)
	}
}
