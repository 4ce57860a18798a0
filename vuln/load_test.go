package vuln

import (
	"errors"
	"strings"
	"testing"
)

// NVD scores and live patch manifests cannot tell which kernels fix a CVE:
// a load with only those would leave every CVE unknown, so Load refuses it
// and names what would do.
func TestLoadNeedsFixFeed(t *testing.T) {
	nvd := FeedSpec{FeedNVD, "testdata/nvd"}
	lp := FeedSpec{FeedLivePatch, "testdata/livepatch"}
	tests := []struct {
		name  string
		specs []FeedSpec
		want  string // "" for success
	}{
		{"nvd", []FeedSpec{nvd}, "only nvd given"},
		{"livepatch", []FeedSpec{lp}, "only livepatch given"},
		{"nvd and livepatch", []FeedSpec{nvd, lp, nvd}, "only nvd and livepatch given"},
		{"with a changelog", []FeedSpec{nvd, lp, {FeedDebianChangelog, realChangelog}}, ""},
		{"with cna", []FeedSpec{nvd, {FeedCNA, "testdata/kernel-cna-sample.tar.gz"}}, ""},
		{"with osv", []FeedSpec{lp, {FeedOSV, "testdata/osv"}}, ""},
	}
	for _, tt := range tests {
		_, err := buildFrom(t, tt.specs...)
		if tt.want == "" {
			if err != nil {
				t.Errorf("Load(%s) = %v, want success", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrNoFixFeed) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "debian-changelog, cna, osv") {
			t.Errorf("Load(%s) = %v, want ErrNoFixFeed saying %q and naming debian-changelog, cna, osv", tt.name, err, tt.want)
		}
	}
}
