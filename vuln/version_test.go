package vuln

import "testing"

func TestKernelVersionCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1", "6.1", 0},
		{"6.1", "6.1.1", -1},
		{"6.1.9", "6.1.10", -1},
		{"6.1.192", "6.6", -1},
		{"6.13-rc1", "6.13-rc3", -1},
		{"6.13-rc7", "6.13", -1},
		{"6.12.77", "6.13-rc1", -1},
		{"6.13", "6.13.1", -1},
		{"5.10.240", "5.4.296", 1},
		{"10.0", "9.99.999", 1},
	}
	for _, tt := range tests {
		a, b := MustKernelVersion(tt.a), MustKernelVersion(tt.b)
		if got := a.Compare(b); got != tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := b.Compare(a); got != -tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestParseKernelVersionErrors(t *testing.T) {
	for _, s := range []string{"", "6", "6.x", "6.1.2.3", "6.01", "6.1-rc", "6.1.1-rc2", "v6.1", "6..1", "-1.2"} {
		if v, err := ParseKernelVersion(s); err == nil {
			t.Errorf("ParseKernelVersion(%q) = %v, want an error", s, v)
		}
	}
	for _, s := range []string{"6.1", "6.1.192", "6.13-rc3", "4.19.312"} {
		v, err := ParseKernelVersion(s)
		if err != nil || v.String() != s {
			t.Errorf("ParseKernelVersion(%q) = %v, %v; want it back", s, v, err)
		}
	}
}

func TestCompareVersionsDeb(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.192-1", "6.1.192-2", -1},
		{"6.1.192-2", "6.1.192+2", -1}, // the signed wrapper's version sorts after
		{"6.1~rc7-1~exp1", "6.1-1", -1},
		{"6.1.4-1", "6.1~rc8-1~exp1", 1},
		{"6.12.9-1~bpo12+1", "6.12.9-1", -1},
		{"6.1.76-1", "6.1.106-3", -1},
		{"1:5.10-1", "6.1-1", 1},
		{"6.1.170-3", "6.1.170-2", 1},
	}
	for _, tt := range tests {
		got, err := CompareVersions(SchemeDeb, tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("CompareVersions(deb, %q, %q) = %d, %v; want %d", tt.a, tt.b, got, err, tt.want)
		}
	}
}

func TestCompareVersionsRPM(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"5.14.0-362.8.1.el9_3", "5.14.0-362.13.1.el9_3", -1},
		{"5.14.0-427.13.1.el9_4", "5.14.0-362.24.1.el9_3", 1},
		{"4.18.0-513.5.1.el8_9", "4.18.0-513.5.1.el8_9", 0},
		{"6.5.6-300.fc39", "6.5.10-300.fc39", -1},
		{"1:4.18.0-1.el8", "4.19.0-1.el8", 1},
		{"5.14.0-1~beta", "5.14.0-1", -1},
	}
	for _, tt := range tests {
		got, err := CompareVersions(SchemeRPM, tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("CompareVersions(rpm, %q, %q) = %d, %v; want %d", tt.a, tt.b, got, err, tt.want)
		}
	}
}

func TestVersionsInvalid(t *testing.T) {
	for _, tt := range []struct {
		s Scheme
		v string
	}{
		{SchemeDeb, ""}, {SchemeDeb, "abc"}, {SchemeDeb, "6.1 192"}, {SchemeDeb, "x:6.1-1"}, {SchemeDeb, " 6.1-1"},
		{SchemeRPM, ""}, {SchemeRPM, "5.14.0-1-2"}, {SchemeRPM, "a:5.14"}, {SchemeRPM, "5.14 .0"}, {SchemeRPM, "-1"},
		{Scheme("apk"), "1.0"},
	} {
		if _, err := CompareVersions(tt.s, tt.v, "1.0"); err == nil {
			t.Errorf("CompareVersions(%s, %q, 1.0): no error, want one", tt.s, tt.v)
		}
	}
}

func TestUpstreamOf(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"6.1.192-2", "6.1.192"},
		{"6.1.192+2", "6.1.192"},
		{"6.12.9-1~bpo12+1", "6.12.9"},
		{"6.1~rc7-1~exp1", "6.1-rc7"},
		{"6.1.76-1", "6.1.76"},
	} {
		got, err := UpstreamOfDebian(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("UpstreamOfDebian(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"6.5.6-300.fc39.x86_64", "6.5.6"},
		{"6.1.0-56-amd64", "6.1"},
		{"6.8.0", "6.8"},
	} {
		got, err := UpstreamOfRelease(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("UpstreamOfRelease(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	if _, err := UpstreamOfDebian("abc-1"); err == nil {
		t.Error("UpstreamOfDebian(abc-1): no error")
	}
}
