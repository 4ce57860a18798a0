package pkgmgr

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAptKernelsFromRealDpkgQuery(t *testing.T) {
	es, err := parseDpkgQuery([]byte(testdata(t, "dpkg-query-4kernels.txt")))
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, l := range parseLines([]byte(testdata(t, "apt-mark-showhold.txt"))) {
		held[l] = true
	}
	got := aptKernelsFrom(es, "6.1.0-55-amd64", held)
	want := []Kernel{
		{Release: "6.1.0-57-amd64", Package: "linux-image-6.1.0-57-amd64", Version: "6.1.192-3", Status: "installed", Packages: []string{"linux-image-6.1.0-57-amd64"}},
		{Release: "6.1.0-56-amd64", Package: "linux-image-6.1.0-56-amd64", Version: "6.1.192-2", Status: "installed", MetaTarget: true,
			Packages: []string{"linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64"}},
		{Release: "6.1.0-55-amd64", Package: "linux-image-6.1.0-55-amd64", Version: "6.1.192-1", Status: "installed", Running: true,
			Packages: []string{"linux-image-6.1.0-55-amd64", "linux-headers-6.1.0-55-amd64"}},
		{Release: "6.1.0-54-amd64", Package: "linux-image-6.1.0-54-amd64", Version: "6.1.192-1~x", Status: "installed", Held: true,
			Packages: []string{"linux-image-6.1.0-54-amd64", "linux-headers-6.1.0-54-amd64"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("aptKernelsFrom (-want +got):\n%s", d)
	}
}

func TestImageRelease(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"linux-image-6.1.0-57-amd64", "6.1.0-57-amd64", true},
		{"linux-image-6.1.0-57-amd64-unsigned", "6.1.0-57-amd64", true},
		{"linux-image-6.1.0-57-cloud-amd64", "6.1.0-57-cloud-amd64", true},
		{"linux-image-5.15.0-91-generic", "5.15.0-91-generic", true},
		{"linux-image-unsigned-5.15.0-91-generic", "5.15.0-91-generic", true},
		{"linux-image-amd64", "", false},
		{"linux-image-generic", "", false},
		{"linux-image-6.1.0-57-amd64-dbg", "", false},
		{"linux-headers-6.1.0-57-amd64", "", false},
	} {
		got, ok := imageRelease(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("imageRelease(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestReleaseFlavour(t *testing.T) {
	for in, want := range map[string]string{
		"6.1.0-57-amd64": "amd64", "6.1.0-57-cloud-amd64": "cloud-amd64", "5.15.0-91-generic": "generic",
		"6.18.44-fc-v1045": "", "5.14.0-362.8.1.el9_3.x86_64": "",
	} {
		if got := releaseFlavour(in); got != want {
			t.Errorf("releaseFlavour(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRealAptCacheOutputs(t *testing.T) {
	st := parseStanzas([]byte(testdata(t, "apt-cache-show-meta.txt")))
	if len(st) != 1 {
		t.Fatalf("apt-cache-show-meta.txt: %d paragraphs, want 1", len(st))
	}
	if pkg, v := dependsOnImage(st[0]["Depends"]); pkg != "linux-image-6.1.0-57-amd64" || v != "6.1.192-3" {
		t.Errorf("dependsOnImage(%q) = %q, %q", st[0]["Depends"], pkg, v)
	}
	if kib, err := installedSizeKiB([]byte(testdata(t, "apt-cache-show-image.txt"))); err != nil || kib != 400842 {
		t.Errorf("installedSizeKiB = %d, %v, want 400842", kib, err)
	}
	inst, cand := policyCandidate([]byte(testdata(t, "apt-cache-policy-meta.txt")))
	if inst != "" || cand != "6.1.192-3" {
		t.Errorf("policyCandidate = %q, %q, want \"\", 6.1.192-3", inst, cand)
	}
}

func TestParseAptSimulation(t *testing.T) {
	got := parseAptSimulation([]byte(testdata(t, "apt-install-sim.txt")))
	found := map[string]Change{}
	for _, c := range got {
		found[c.Name] = c
	}
	if c := found["linux-image-6.1.0-57-amd64"]; c != (Change{Name: "linux-image-6.1.0-57-amd64", To: "6.1.192-3"}) {
		t.Errorf("image change = %+v", c)
	}
	if c := found["systemd-sysv"]; c.From != "252.38-1~deb12u1" || c.To != "252.39-1~deb12u2" {
		t.Errorf("systemd-sysv change = %+v, want 252.38-1~deb12u1 -> 252.39-1~deb12u2", c)
	}
	rm := parseAptSimulation([]byte(testdata(t, "apt-remove-sim.txt")))
	want := []Change{{Name: "linux-headers-6.1.0-55-amd64", From: "6.1.192-1"}, {Name: "linux-image-6.1.0-55-amd64", From: "6.1.192-1"}}
	if d := cmp.Diff(want, rm); d != "" {
		t.Errorf("remove simulation (-want +got):\n%s", d)
	}
}

func TestClassifyRealMessages(t *testing.T) {
	for _, tt := range []struct {
		out  string
		want error
	}{
		{testdata(t, "apt-err-version.txt"), ErrNotFound},
		{testdata(t, "apt-err-locate.txt"), ErrNotFound},
		{"E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem. ", ErrDpkgInterrupted},
		{"E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (apt-get)", ErrLocked},
		{"E: Failed to fetch http://10.0.2.2:8080/./linux-image.deb  Could not connect to 10.0.2.2:8080", ErrUnreachable},
		{"dpkg: error processing archive x.deb (--unpack):\n cannot copy extracted data for './boot/vmlinuz' to '/boot/vmlinuz.dpkg-new': failed to write (No space left on device)", ErrNoSpace},
		{"E: Sub-process /usr/bin/dpkg returned an error code (1)", nil},
	} {
		if got := classify(tt.out); got != tt.want {
			t.Errorf("classify(%q) = %v, want %v", tt.out, got, tt.want)
		}
	}
}

func TestDetectOSRelease(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Family
		ok   bool
	}{
		{"ID=debian\nVERSION_ID=\"12\"\n", Apt, true},
		{"ID=ubuntu\nID_LIKE=debian\n", Apt, true},
		{"ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", Dnf, true},
		{"ID=\"rhel\"\n", Dnf, true},
		{"ID=almalinux\nID_LIKE=\"rhel centos fedora\"\n", Dnf, true},
		{"ID=arch\n", "", false},
	} {
		got, err := detectOSRelease([]byte(tt.in))
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("detectOSRelease(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}
