package vuln

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	debversion "github.com/knqyf263/go-deb-version"
	rpmversion "github.com/knqyf263/go-rpm-version"
)

// KernelVersion is an upstream Linux version as the kernel CNA writes it:
// "6.11" (a mainline release), "6.6.51" (a stable release), "6.13-rc3",
// and before 3.0 "2.6.32" (a mainline release) and "2.6.32.30" (a stable
// release of it).
type KernelVersion struct {
	Major, Minor, Patch int
	Sub                 int // the fourth number of a stable release before 3.0 (2.6.32.30)
	RC                  int // release candidate number; 0 for a release
}

// Branch is a stable branch: "6.1", or before 3.0 "2.6.32" (Patch is then
// the third number; it is 0 from 3.0 on).
type Branch struct{ Major, Minor, Patch int }

func (b Branch) String() string {
	if b.Patch > 0 {
		return fmt.Sprintf("%d.%d.%d", b.Major, b.Minor, b.Patch)
	}
	return fmt.Sprintf("%d.%d", b.Major, b.Minor)
}

// Compare orders branches.
func (b Branch) Compare(c Branch) int {
	if b.Major != c.Major {
		return cmpInt(b.Major, c.Major)
	}
	if b.Minor != c.Minor {
		return cmpInt(b.Minor, c.Minor)
	}
	return cmpInt(b.Patch, c.Patch)
}

// threeNumberRelease reports whether major numbers its releases with three
// numbers (2.6.32) and its stable updates with four (2.6.32.30): every
// kernel before 3.0.
func threeNumberRelease(major int) bool { return major < 3 }

// ParseKernelVersion parses "6.1", "6.1.192", "6.13-rc3", "6.1-rc7" and,
// before 3.0, "2.6.32", "2.6.32.30" and "2.6.33-rc1". Any other form is an
// error: a version that cannot be ordered must never be guessed at.
func ParseKernelVersion(s string) (KernelVersion, error) {
	var v KernelVersion
	rest := s
	if i := strings.Index(rest, "-rc"); i >= 0 {
		n, err := strconv.Atoi(rest[i+3:])
		if err != nil || n <= 0 || rest[i+3] == '+' {
			return KernelVersion{}, fmt.Errorf("kernel version %q: bad release candidate", s)
		}
		v.RC = n
		rest = rest[:i]
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return KernelVersion{}, fmt.Errorf("kernel version %q: want MAJOR.MINOR[.PATCH] (or 2.6.X[.Y] before 3.0)", s)
	}
	nums := [4]int{}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || (len(p) > 1 && p[0] == '0') || p[0] == '+' {
			return KernelVersion{}, fmt.Errorf("kernel version %q: %q is not a number", s, p)
		}
		nums[i] = n
	}
	v.Major, v.Minor, v.Patch, v.Sub = nums[0], nums[1], nums[2], nums[3]
	if len(parts) == 4 && !threeNumberRelease(v.Major) {
		return KernelVersion{}, fmt.Errorf("kernel version %q: four numbers are a stable release before 3.0 only; want MAJOR.MINOR[.PATCH]", s)
	}
	if len(parts) == 4 && v.Sub == 0 {
		return KernelVersion{}, fmt.Errorf("kernel version %q: a fourth number 0 is not a release", s)
	}
	if v.IsZero() {
		// The zero value means "no version" ("0" in the CNA's ranges is
		// handled by its callers); 0.0 would read as that.
		return KernelVersion{}, fmt.Errorf("kernel version %q: 0.0 is no release", s)
	}
	if v.RC > 0 && !v.IsMainline() {
		return KernelVersion{}, fmt.Errorf("kernel version %q: a release candidate is of a mainline release, not of a stable update", s)
	}
	return v, nil
}

// MustKernelVersion is ParseKernelVersion for constants in tests and tables.
func MustKernelVersion(s string) KernelVersion {
	v, err := ParseKernelVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// Branch returns the stable branch the version belongs to.
func (v KernelVersion) Branch() Branch {
	if threeNumberRelease(v.Major) {
		return Branch{v.Major, v.Minor, v.Patch}
	}
	return Branch{v.Major, v.Minor, 0}
}

// IsMainline reports whether v is a mainline release or release candidate
// ("6.11", "6.13-rc3", "2.6.32") rather than a stable update ("6.6.51",
// "2.6.32.30").
func (v KernelVersion) IsMainline() bool {
	if threeNumberRelease(v.Major) {
		return v.Sub == 0
	}
	return v.Patch == 0
}

// IsZero reports whether v is the zero value (no version).
func (v KernelVersion) IsZero() bool { return v == KernelVersion{} }

// Compare orders versions: 6.13-rc1 < 6.13-rc3 < 6.13 < 6.13.1 < 6.14.
func (v KernelVersion) Compare(w KernelVersion) int {
	for _, p := range [][2]int{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}, {v.Sub, w.Sub}} {
		if p[0] != p[1] {
			return cmpInt(p[0], p[1])
		}
	}
	// A release candidate comes before its release (RC 0).
	switch {
	case v.RC == w.RC:
		return 0
	case v.RC == 0:
		return 1
	case w.RC == 0:
		return -1
	}
	return cmpInt(v.RC, w.RC)
}

func (v KernelVersion) String() string {
	if v.IsZero() {
		return ""
	}
	s := fmt.Sprintf("%d.%d", v.Major, v.Minor)
	if v.Patch > 0 || v.Sub > 0 {
		s += fmt.Sprintf(".%d", v.Patch)
	}
	if v.Sub > 0 {
		s += fmt.Sprintf(".%d", v.Sub)
	}
	if v.RC > 0 {
		s += fmt.Sprintf("-rc%d", v.RC)
	}
	return s
}

// MarshalText writes the version as String does.
func (v KernelVersion) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText parses what MarshalText wrote; the empty string is the zero value.
func (v *KernelVersion) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*v = KernelVersion{}
		return nil
	}
	w, err := ParseKernelVersion(string(b))
	if err != nil {
		return err
	}
	*v = w
	return nil
}

func sign(c int) int { return cmpInt(c, 0) }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Scheme is how a distribution orders its package versions.
type Scheme string

const (
	SchemeDeb Scheme = "deb" // dpkg ordering (Debian, Ubuntu)
	SchemeRPM Scheme = "rpm" // rpmvercmp ordering (RHEL, Fedora, SUSE, ...)
)

// cmpCache remembers comparisons: a fleet has few distinct kernel versions
// and go-deb-version compares with regular expressions. It is cleared when
// it grows past cmpCacheMax entries.
var (
	cmpMu         sync.Mutex
	cmpCache      = map[[3]string]int{}
	validCache    = map[[2]string]bool{}
	cmpCacheMax   = 1 << 16
	validCacheMax = 1 << 16
)

// CompareVersions orders two package versions under scheme s. Debian
// versions are validated; an invalid one is an error, never a guess.
func CompareVersions(s Scheme, a, b string) (int, error) {
	k := [3]string{string(s), a, b}
	cmpMu.Lock()
	c, ok := cmpCache[k]
	cmpMu.Unlock()
	if ok {
		return c, nil
	}
	c, err := compareVersions(s, a, b)
	if err != nil {
		return 0, err
	}
	cmpMu.Lock()
	if len(cmpCache) >= cmpCacheMax {
		clear(cmpCache)
	}
	cmpCache[k] = c
	cmpMu.Unlock()
	return c, nil
}

func compareVersions(s Scheme, a, b string) (int, error) {
	switch s {
	case SchemeDeb:
		if err := ValidateVersion(s, a); err != nil {
			return 0, err
		}
		if err := ValidateVersion(s, b); err != nil {
			return 0, err
		}
		va, _ := debversion.NewVersion(a)
		vb, _ := debversion.NewVersion(b)
		return sign(va.Compare(vb)), nil
	case SchemeRPM:
		if err := ValidateVersion(s, a); err != nil {
			return 0, err
		}
		if err := ValidateVersion(s, b); err != nil {
			return 0, err
		}
		return sign(rpmversion.NewVersion(a).Compare(rpmversion.NewVersion(b))), nil
	}
	return 0, fmt.Errorf("unknown version scheme %q", s)
}

// ValidateVersion checks that v is a well-formed version under scheme s.
// go-rpm-version accepts anything, so RPM versions are checked here: an
// optional numeric epoch, then VERSION[-RELEASE] made of alphanumerics and
// ._+~^ and starting with an alphanumeric.
func ValidateVersion(s Scheme, v string) error {
	k := [2]string{string(s), v}
	cmpMu.Lock()
	ok := validCache[k]
	cmpMu.Unlock()
	if ok {
		return nil
	}
	if err := validateVersion(s, v); err != nil {
		return err
	}
	cmpMu.Lock()
	if len(validCache) >= validCacheMax {
		clear(validCache)
	}
	validCache[k] = true
	cmpMu.Unlock()
	return nil
}

func validateVersion(s Scheme, v string) error {
	switch s {
	case SchemeDeb:
		if _, err := debversion.NewVersion(v); err != nil || strings.TrimSpace(v) != v {
			if err == nil {
				err = fmt.Errorf("surrounding white space")
			}
			return fmt.Errorf("debian version %q: %w", v, err)
		}
		return nil
	case SchemeRPM:
		rest := v
		if i := strings.IndexByte(rest, ':'); i >= 0 {
			if _, err := strconv.ParseUint(rest[:i], 10, 31); err != nil {
				return fmt.Errorf("rpm version %q: epoch %q is not a number", v, rest[:i])
			}
			rest = rest[i+1:]
		}
		if rest == "" || strings.Count(rest, "-") > 1 {
			return fmt.Errorf("rpm version %q: want [EPOCH:]VERSION[-RELEASE]", v)
		}
		for _, part := range strings.Split(rest, "-") {
			if part == "" || !isAlnum(part[0]) {
				return fmt.Errorf("rpm version %q: empty or oddly started part %q", v, part)
			}
			for i := 0; i < len(part); i++ {
				if c := part[i]; !isAlnum(c) && !strings.ContainsRune("._+~^", rune(c)) {
					return fmt.Errorf("rpm version %q: character %q not allowed", v, c)
				}
			}
		}
		return nil
	}
	return fmt.Errorf("unknown version scheme %q", s)
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// UpstreamOfDebian returns the upstream kernel version a Debian or Ubuntu
// linux package version is built from: "6.1.192-2" → 6.1.192,
// "6.12.9-1~bpo12+1" → 6.12.9, "6.1~rc7-1~exp1" → 6.1-rc7.
func UpstreamOfDebian(pkgVersion string) (KernelVersion, error) {
	v := pkgVersion
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v = v[:i]
	}
	rc := ""
	if i := strings.Index(v, "~rc"); i >= 0 {
		end := i + 3
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
		rc = "-rc" + v[i+3:end]
		v = v[:i]
	}
	if i := strings.IndexAny(v, "~+"); i >= 0 {
		v = v[:i]
	}
	kv, err := ParseKernelVersion(v + rc)
	if err != nil {
		return KernelVersion{}, fmt.Errorf("upstream of package version %q: %w", pkgVersion, err)
	}
	return kv, nil
}

// UpstreamOfRelease returns the upstream version at the start of a kernel
// release string: "6.5.6-300.fc39.x86_64" → 6.5.6, "6.1.0-56-amd64" → 6.1.
func UpstreamOfRelease(release string) (KernelVersion, error) {
	end := 0
	for end < len(release) && (release[end] >= '0' && release[end] <= '9' || release[end] == '.') {
		end++
	}
	s := strings.TrimSuffix(release[:end], ".")
	kv, err := ParseKernelVersion(s)
	if err != nil {
		return KernelVersion{}, fmt.Errorf("upstream of kernel release %q: %w", release, err)
	}
	return kv, nil
}
