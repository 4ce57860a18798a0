// Package kinfo reads what the running kernel says about itself: release,
// version string and the distribution package version it carries, the GNU
// build ID from /sys/kernel/notes, os-release, taint flags and whether live
// patching can work here. It only reads files, under the filesystem root
// its functions take ("/" on the host, a fake tree in tests).
package kinfo

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kernel describes the running kernel.
type Kernel struct {
	Release        string `json:"release"`                   // uname -r
	Version        string `json:"version"`                   // uname -v
	ProcVersion    string `json:"proc_version"`              // /proc/version, whole line
	PackageVersion string `json:"package_version,omitempty"` // e.g. 6.1.192-2 (Debian) or 5.14.0-362.8.1.el9_3 (RPM)
	BuildID        string `json:"build_id,omitempty"`        // GNU build ID of vmlinux, hex
	Arch           string `json:"arch,omitempty"`
	BootID         string `json:"boot_id,omitempty"`
}

// Read reads the running kernel's identity from /proc and /sys under the
// filesystem root root ("/" on the host).
func Read(root string) (*Kernel, error) {
	k := &Kernel{}
	var err error
	if k.Release, err = readTrim(root, "proc/sys/kernel/osrelease"); err != nil {
		return nil, err
	}
	if k.Version, err = readTrim(root, "proc/sys/kernel/version"); err != nil {
		return nil, err
	}
	if k.ProcVersion, err = readTrim(root, "proc/version"); err != nil {
		return nil, err
	}
	k.PackageVersion = PackageVersion(k.Release, k.Version)
	if sig, err := readTrim(root, "proc/version_signature"); err == nil && k.PackageVersion == "" {
		// Ubuntu: "Ubuntu 5.15.0-91.101-generic 5.15.131"
		if f := strings.Fields(sig); len(f) >= 2 {
			if i := strings.LastIndex(f[1], "-"); i > 0 {
				k.PackageVersion = f[1][:i]
			}
		}
	}
	if id, err := buildID(root); err == nil {
		k.BuildID = id
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k.BootID, _ = readTrim(root, "proc/sys/kernel/random/boot_id")
	k.Arch = archOf(k.Release)
	return k, nil
}

func readTrim(root, rel string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// rpmArches are the architecture suffixes of RPM kernel releases.
var rpmArches = []string{"x86_64", "aarch64", "ppc64le", "s390x"}

// rpmArch returns the architecture that ends an RPM kernel release
// ("5.14.0-362.8.1.el9_3.x86_64"), or "".
func rpmArch(release string) string {
	for _, a := range rpmArches {
		if strings.HasSuffix(release, "."+a) {
			return a
		}
	}
	return ""
}

// debianVersionIn returns the package version in a Debian kernel's version
// string: the word after "Debian " when it starts with a digit.
func debianVersionIn(version string) string {
	const word = "Debian "
	for i := 0; ; {
		j := strings.Index(version[i:], word)
		if j < 0 {
			return ""
		}
		j += i
		rest := version[j+len(word):]
		if (j == 0 || !isWordByte(version[j-1])) && rest != "" && rest[0] >= '0' && rest[0] <= '9' {
			if end := strings.IndexAny(rest, " \t\n\f\r"); end >= 0 {
				return rest[:end]
			}
			return rest
		}
		i = j + 1
	}
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// PackageVersion returns the distribution package version of a kernel from
// its release and version strings, or "" when they do not carry one. Debian
// puts it in the version string ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2
// (2026-11-16)"); RPM distributions put it in the release
// ("5.14.0-362.8.1.el9_3.x86_64").
func PackageVersion(release, version string) string {
	if v := debianVersionIn(version); v != "" {
		return v
	}
	if a := rpmArch(release); a != "" && strings.Contains(release, ".el") {
		return strings.TrimSuffix(release, "."+a)
	}
	return ""
}

func archOf(release string) string {
	if a := rpmArch(release); a != "" {
		return a
	}
	for _, a := range []string{"amd64", "arm64", "ppc64el", "s390x"} {
		if strings.HasSuffix(release, "-"+a) {
			return a
		}
	}
	return ""
}

// NT_GNU_BUILD_ID is the ELF note type of the GNU build ID.
const ntGNUBuildID = 3

// buildID parses the ELF notes in /sys/kernel/notes and returns the GNU
// build ID of the running vmlinux.
func buildID(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "sys/kernel/notes"))
	if err != nil {
		return "", err
	}
	return ParseBuildID(b)
}

// ParseBuildID returns the hex GNU build ID from a sequence of ELF notes in
// the host's byte order, as /sys/kernel/notes holds them.
func ParseBuildID(notes []byte) (string, error) {
	off := 0
	for off+12 <= len(notes) {
		namesz := int(binary.LittleEndian.Uint32(notes[off:]))
		descsz := int(binary.LittleEndian.Uint32(notes[off+4:]))
		typ := binary.LittleEndian.Uint32(notes[off+8:])
		off += 12
		nameEnd := off + align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if namesz < 0 || descsz < 0 || nameEnd > len(notes) || nameEnd+descsz > len(notes) {
			return "", fmt.Errorf("kernel notes: truncated note at byte %d", off-12)
		}
		name := bytes.TrimRight(notes[off:off+namesz], "\x00")
		if typ == ntGNUBuildID && string(name) == "GNU" {
			return hex.EncodeToString(notes[nameEnd : nameEnd+descsz]), nil
		}
		off = descEnd
	}
	return "", fmt.Errorf("kernel notes: no GNU build ID: %w", os.ErrNotExist)
}

func align4(n int) int { return (n + 3) &^ 3 }

// Distro is what /etc/os-release says.
type Distro struct {
	ID         string   `json:"id"`
	VersionID  string   `json:"version_id,omitempty"`
	Codename   string   `json:"codename,omitempty"`
	PrettyName string   `json:"pretty_name,omitempty"`
	IDLike     []string `json:"id_like,omitempty"`
	Source     string   `json:"source"` // the file read: /etc/os-release or /usr/lib/os-release
}

// ReadDistro reads /etc/os-release (falling back to /usr/lib/os-release)
// under the filesystem root root.
func ReadDistro(root string) (*Distro, error) {
	var data []byte
	d := &Distro{}
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err == nil {
			data, d.Source = b, "/"+p
			break
		}
	}
	if data == nil {
		return nil, errors.New("distribution: neither /etc/os-release nor /usr/lib/os-release exists")
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		// Values are shell-quoted (os-release(5)).
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		switch k {
		case "ID":
			d.ID = v
		case "VERSION_ID":
			d.VersionID = v
		case "VERSION_CODENAME":
			d.Codename = v
		case "PRETTY_NAME":
			d.PrettyName = v
		case "ID_LIKE":
			d.IDLike = strings.Fields(v)
		}
	}
	return d, nil
}
