package pkgbuild

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
)

func TestPackageVersion(t *testing.T) {
	tests := []struct {
		describe string
		commits  int
		want     string
	}{
		{"v1.2.3", 0, "1.2.3"},
		{"1.2.3", 0, "1.2.3"},
		{"v1.2.3-dirty", 0, "1.2.3+0.dirty"},
		{"v1.2.3-4-gabcdef0", 0, "1.2.3+4.gabcdef0"},
		{"v1.2.3-4-gabcdef0-dirty", 0, "1.2.3+4.gabcdef0.dirty"},
		{"v1.2.3-rc1", 0, "1.2.3~rc1"},
		{"v1.2.3-rc1-2-g0123abc", 0, "1.2.3~rc1+2.g0123abc"},
		{"0a02599", 200, "0.0.0+200.g0a02599"},
		{"0a02599-dirty", 200, "0.0.0+200.g0a02599.dirty"},
		{" v2.0.0\n", 0, "2.0.0"},
	}
	for _, tt := range tests {
		got, err := PackageVersion(tt.describe, tt.commits)
		if err != nil || got != tt.want {
			t.Errorf("PackageVersion(%q, %d) = %q, %v, want %q", tt.describe, tt.commits, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "release one", "v1.2_3", "0a02599", "-1", "v"} {
		if got, err := PackageVersion(bad, 0); err == nil {
			t.Errorf("PackageVersion(%q, 0) = %q, want an error", bad, got)
		} else if !strings.Contains(err.Error(), "VERSION=") {
			t.Errorf("PackageVersion(%q, 0) error %q does not say what to do", bad, err)
		}
	}
}

// TestPackageVersionOrder checks with dpkg's and rpm's own comparison that
// converted versions sort as the builds they name: a pre-release before
// its release, a release before commits after it, clean before dirty,
// untagged builds by their commit count.
func TestPackageVersionOrder(t *testing.T) {
	order := [][2]any{
		{"0a02599", 9}, {"fffffff", 10}, {"fffffff-dirty", 10}, {"00000a1", 11},
		{"v1.0.0-rc1", 0}, {"v1.0.0-rc1-3-gabc1234", 0}, {"v1.0.0", 0}, {"v1.0.0-dirty", 0},
		{"v1.0.0-1-g1234567", 0}, {"v1.0.0-12-g0000000", 0}, {"v1.0.1", 0}, {"v1.10.0", 0},
	}
	var vs []string
	for _, o := range order {
		v, err := PackageVersion(o[0].(string), o[1].(int))
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	testenv.NeedTools(t, "dpkg")
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Fatal(err)
	}
	rpmOK := exec.Command("rpm", "--eval", `%{lua: print(rpm.vercmp("1", "2"))}`).Run() == nil
	if !rpmOK {
		testenv.HaveTools(t, "rpm") // fails under CI; otherwise only dpkg's half runs
	}
	for i := 0; i+1 < len(vs); i++ {
		a, b := vs[i], vs[i+1]
		if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg --compare-versions %s lt %s: %v", a, b, err)
		}
		if rpmOK {
			out, err := exec.Command("rpm", "--eval", `%{lua: print(rpm.vercmp("`+a+`", "`+b+`"))}`).Output()
			if err != nil || strings.TrimSpace(string(out)) != "-1" {
				t.Errorf("rpm.vercmp(%s, %s) = %q, %v, want -1", a, b, out, err)
			}
		}
	}
	t.Logf("ordered by dpkg (and rpm: %v): %s", rpmOK, strings.Join(vs, " < "))
}
