package pkgbuild

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// v1.2.3, v1.2.3-4-gabcdef0, v1.2.3-rc1-dirty: a tag, with the commits
	// since it and the abbreviated hash when HEAD is not the tag.
	describeTagged = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.+~-]*?)(?:-([0-9]+)-g([0-9a-f]{4,40}))?(-dirty)?$`)
	// 0a02599, 0a02599-dirty: no tag at all (git describe --always).
	describeBare = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)
)

// PackageVersion turns the output of `git describe --tags --always
// --dirty` (what `make build` stamps into the binaries) into a version that
// is valid for both dpkg and rpm and orders builds as git does:
//
//	v1.2.3            -> 1.2.3
//	v1.2.3-rc1        -> 1.2.3~rc1 (before 1.2.3 in both)
//	v1.2.3-4-gabcdef0 -> 1.2.3+4.gabcdef0 (after 1.2.3)
//	v1.2.3-dirty      -> 1.2.3+0.dirty (after 1.2.3, before 1.2.3+1...)
//	...-N-gHASH-dirty -> ....dirty
//	0a02599           -> 0.0.0+N.g0a02599, N = commits (git rev-list --count HEAD)
//
// A bare hash sorts nowhere by itself, so untagged builds are ordered by
// their number of commits; commits is only used for them.
func PackageVersion(describe string, commits int) (string, error) {
	d := strings.TrimSpace(describe)
	var v string
	dirty := false
	if m := describeBare.FindStringSubmatch(d); m != nil && !strings.HasPrefix(d, "v") && !isAllDigits(m[1]) {
		if commits < 1 {
			return "", fmt.Errorf("version %q has no tag and the number of commits is unknown: tag the release (git tag v1.0.0) or give VERSION=1.0.0", describe)
		}
		v = fmt.Sprintf("0.0.0+%d.g%s", commits, m[1])
		dirty = m[2] != ""
	} else if m := describeTagged.FindStringSubmatch(d); m != nil {
		// dpkg and rpm both sort "~" before the end of the version, as a
		// pre-release; rpm forbids "-" in a version.
		v = strings.ReplaceAll(m[1], "-", "~")
		switch {
		case m[2] != "":
			v += sep(v) + m[2] + ".g" + m[3]
		case m[4] != "":
			// dpkg sorts letters after digits: 1.2.3+dirty would come
			// after 1.2.3+4.gabcdef0, a later commit.
			v += sep(v) + "0"
		}
		dirty = m[4] != ""
	} else {
		return "", fmt.Errorf("version %q is not what git describe prints (v1.2.3, v1.2.3-4-gabcdef0, abcdef0, each optionally -dirty): give VERSION=1.2.3", describe)
	}
	if dirty {
		v += sep(v) + "dirty"
	}
	return v, nil
}

// sep is what joins a suffix that sorts after v: "+" once, then ".".
func sep(v string) string {
	if strings.Contains(v, "+") {
		return "."
	}
	return "+"
}

func isAllDigits(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}
