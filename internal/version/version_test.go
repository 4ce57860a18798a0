package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"tagged", debug.BuildInfo{Main: debug.Module{Version: "v1.4.2"}}, "1.4.2"},
		{"pseudo-version", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261122150000-0123456789ab"}}, "0.0.0-20261122150000-0123456789ab"},
		{"from a checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "867fa8d3b0c1e2f4a5b6c7d8e9f00112233445566"}, {Key: "vcs.time", Value: "2026-11-22T15:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			"dev-867fa8d3b0c1 (2026-11-22T15:00:00Z)"},
		{"uncommitted changes", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "867fa8d"}, {Key: "vcs.modified", Value: "true"}}},
			"dev-867fa8d+dirty"},
		{"nothing recorded", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for _, tt := range tests {
		if got := fromBuildInfo(&tt.bi); got != tt.want {
			t.Errorf("%s: fromBuildInfo = %q, want %q", tt.name, got, tt.want)
		}
	}
}
