// Package version says which build of Stent is running: what `make build`
// stamped into it (git describe), else what the Go toolchain recorded: the
// module version of a tagged build, otherwise the VCS revision and time
// (with "+dirty" for uncommitted changes), otherwise "dev".
package version

import (
	"runtime/debug"
	"strings"
)

// stamped is set at link time by `make build`
// (-ldflags "-X github.com/stent-dev/stent/internal/version.stamped=...").
var stamped string

// String returns the running build's version.
func String() string {
	if stamped != "" {
		return stamped
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return strings.TrimPrefix(v, "v")
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "dev-" + rev
	if dirty {
		v += "+dirty"
	}
	if at != "" {
		v += " (" + at + ")"
	}
	return v
}
