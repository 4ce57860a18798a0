package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string]string
		wantErr bool
	}{
		{nil, nil, false},
		{[]string{"role=web", "dc=fra-1", "k8s.io/zone=a"}, map[string]string{"role": "web", "dc": "fra-1", "k8s.io/zone": "a"}, false},
		{[]string{"empty="}, map[string]string{"empty": ""}, false},
		{[]string{"novalue"}, nil, true},
		{[]string{"=v"}, nil, true},
		{[]string{"sp ace=v"}, nil, true},
		{[]string{"k=v;rm"}, nil, true},
	}
	for _, tt := range tests {
		got, err := ParseLabels(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseLabels(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if d := cmp.Diff(tt.want, got); d != "" && !tt.wantErr {
			t.Errorf("ParseLabels(%q) mismatch (-want +got):\n%s", tt.in, d)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Duration(90 * time.Second))
	if err != nil || string(b) != `"1m30s"` {
		t.Errorf("Marshal(90s) = %s, %v", b, err)
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"250ms"`), &d); err != nil || time.Duration(d) != 250*time.Millisecond {
		t.Errorf("Unmarshal(250ms) = %v, %v", d, err)
	}
	for _, bad := range []string{`30`, `"soon"`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) = nil error", bad)
		}
	}
}

func TestFingerprint(t *testing.T) {
	good := "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	if _, err := parseFingerprint(good); err != nil {
		t.Errorf("parseFingerprint(%q) = %v", good, err)
	}
	if _, err := TLSConfig(TLSOptions{Fingerprint: "SHA256:AB:CD"}); err == nil {
		t.Errorf("TLSConfig with a short fingerprint = nil error")
	}
	if _, err := TLSConfig(TLSOptions{CAFile: "/nonexistent"}); err == nil {
		t.Errorf("TLSConfig with a missing CA file = nil error")
	}
}
