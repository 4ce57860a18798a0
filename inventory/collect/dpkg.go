package collect

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// dpkgPackage is one stanza of dpkg's status file.
type dpkgPackage struct {
	Name, Version, Arch, Source, Status string
}

// parseDpkgStatus parses /var/lib/dpkg/status and returns the installed
// packages (Status "... installed").
func parseDpkgStatus(name string, data []byte) ([]dpkgPackage, error) {
	var out []dpkgPackage
	var cur dpkgPackage
	field := ""
	flush := func(line int) error {
		if cur.Name == "" && cur.Version == "" && cur.Status == "" {
			return nil
		}
		if cur.Name == "" {
			return fmt.Errorf("%s: stanza ending at line %d: Package: missing required field", name, line)
		}
		if f := strings.Fields(cur.Status); len(f) == 3 && (f[2] == "installed") {
			if cur.Version == "" {
				return fmt.Errorf("%s: package %s (stanza ending at line %d): Version: missing required field", name, cur.Name, line)
			}
			out = append(out, cur)
		}
		cur = dpkgPackage{}
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if err := flush(n); err != nil {
				return nil, err
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if field == "" {
				return nil, fmt.Errorf("%s:%d: continuation line outside a field", name, n)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want \"Field: value\", got %q", name, n, line)
		}
		field = k
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Arch = v
		case "Source":
			cur.Source = v
		case "Status":
			cur.Status = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := flush(n); err != nil {
		return nil, err
	}
	return out, nil
}

// dpkgInstallTimes reads when each package was last installed, from
// /var/log/dpkg.log ("2026-11-20 10:00:00 status installed libc6:amd64
// 2.36-9+deb12u9") when present, falling back to the modification time of
// /var/lib/dpkg/info/<package>[:<arch>].list.
func dpkgInstallTimes(root string, pkgs []dpkgPackage) map[string]time.Time {
	times := map[string]time.Time{}
	if data, err := os.ReadFile(filepath.Join(root, "var/log/dpkg.log")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 6 || f[2] != "status" || f[3] != "installed" {
				continue
			}
			t, err := time.ParseInLocation("2006-01-02 15:04:05", f[0]+" "+f[1], time.Local)
			if err != nil {
				continue
			}
			name, _, _ := strings.Cut(f[4], ":")
			times[name] = t.UTC()
		}
	}
	for _, p := range pkgs {
		if _, ok := times[p.Name]; ok {
			continue
		}
		for _, n := range []string{p.Name + ":" + p.Arch + ".list", p.Name + ".list"} {
			if st, err := os.Stat(filepath.Join(root, "var/lib/dpkg/info", n)); err == nil {
				times[p.Name] = st.ModTime().UTC()
				break
			}
		}
	}
	return times
}

// debianKernelRelease returns the kernel release a Debian or Ubuntu kernel
// image package boots ("linux-image-6.1.0-56-amd64" → "6.1.0-56-amd64"),
// or "" for other packages, metapackages and debug symbols.
func debianKernelRelease(name string) string {
	for _, prefix := range []string{"linux-image-unsigned-", "linux-image-"} {
		if rel, ok := strings.CutPrefix(name, prefix); ok {
			if rel == "" || rel[0] < '0' || rel[0] > '9' || strings.HasSuffix(rel, "-dbg") || strings.HasSuffix(rel, "-dbgsym") {
				return ""
			}
			return rel
		}
	}
	return ""
}

// isDebianKernelMeta tells a kernel metapackage ("linux-image-amd64",
// "linux-image-cloud-amd64", Ubuntu's "linux-image-generic").
func isDebianKernelMeta(name string) bool {
	rel, ok := strings.CutPrefix(name, "linux-image-")
	return ok && rel != "" && (rel[0] < '0' || rel[0] > '9') && !strings.HasPrefix(rel, "unsigned-") && !strings.HasSuffix(rel, "-dbg")
}

// sourcePackage reduces a Source field ("linux-signed-amd64 (6.1.192+2)")
// to the source package whose changelog lists the fixes ("linux").
func sourcePackage(src string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(src), " ")
	if s == "" {
		return ""
	}
	if strings.HasPrefix(s, "linux-signed") {
		// Debian: linux-signed-amd64 signs linux. Ubuntu: linux-signed-aws
		// signs linux-aws.
		rest := strings.TrimPrefix(s, "linux-signed")
		switch rest {
		case "", "-amd64", "-arm64", "-i386", "-ppc64el", "-s390x":
			return "linux"
		}
		return "linux" + rest
	}
	return s
}
