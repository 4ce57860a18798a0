package kpkg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	debversion "github.com/knqyf263/go-deb-version"
)

// aptClient finds package versions and .deb files, first in the .deb cache
// folder (which may be seeded by hand), then through apt. It runs
// apt-get update at most once, and only when apt does not know a package.
type aptClient struct {
	debs    string    // folder of cached .deb files
	out     io.Writer // progress and apt's own output
	updated bool
}

// imageVersion returns the package version of the image of a.
func (c *aptClient) imageVersion(ctx context.Context, a abi) (string, error) {
	name := a.imagePkg()
	vs, err := cachedVersions(c.debs, name)
	if err != nil {
		return "", err
	}
	if len(vs) == 0 {
		if vs, err = c.versions(ctx, name); err != nil {
			return "", err
		}
	}
	if len(vs) == 0 {
		return "", fmt.Errorf("%s: %w in the apt sources (after apt-get update) nor in %s; check the ABI with `apt-cache search linux-image-%s`",
			name, ErrNotFound, c.debs, a.series)
	}
	return newest(vs), nil
}

// kbuildVersion returns the version of linux-kbuild-<series> to use with
// image version v: v itself if it can be had, else the newest version of the
// same upstream release (the archive keeps only the newest kbuild).
func (c *aptClient) kbuildVersion(ctx context.Context, a abi, v string) (string, error) {
	name := a.kbuildPkg()
	vs, err := cachedVersions(c.debs, name)
	if err != nil {
		return "", err
	}
	if pick, err := pickKbuild(vs, v); err == nil && pick == v {
		return pick, nil
	}
	av, err := c.versions(ctx, name)
	if err != nil {
		return "", err
	}
	pick, err := pickKbuild(append(vs, av...), v)
	if err != nil {
		return "", fmt.Errorf("%s for %s: %w", name, a.full, err)
	}
	if pick != v {
		fmt.Fprintf(c.out, "kpkg: %s=%s is gone from the archive; using %s (same upstream release, or the next one of the series when none is left)\n", name, v, pick)
	}
	return pick, nil
}

// pickKbuild picks want from have, or else the newest version of have with
// the same upstream version as want, or else (the archive keeps only the
// newest kbuild of a series, so an ABI two stable releases old has none of
// its own) the oldest version of a later upstream release of the same
// series: kbuild's tools (modpost, fixdep, genksyms) are stable within a
// series, a module linked with them is checked by modpost against the
// ABI's own Module.symvers, and the builder's verify step checks the
// compiled code against the shipped kernel. Never an earlier release.
func pickKbuild(have []string, want string) (string, error) {
	wv, err := debversion.NewVersion(want)
	if err != nil {
		return "", fmt.Errorf("parse version %q: %w", want, err)
	}
	var same []string
	for _, h := range have {
		if h == want {
			return h, nil
		}
		hv, err := debversion.NewVersion(h)
		if err == nil && hv.Epoch() == wv.Epoch() && hv.Version() == wv.Version() {
			same = append(same, h)
		}
	}
	if len(same) > 0 {
		return newest(same), nil
	}
	var later []string
	for _, h := range have {
		if hv, err := debversion.NewVersion(h); err == nil && hv.Epoch() == wv.Epoch() && sameSeries(hv.Version(), wv.Version()) && debLess(want, h) {
			later = append(later, h)
		}
	}
	if len(later) == 0 {
		return "", fmt.Errorf("version %s (or another of upstream %s or a later %s release) %w; have %v", want, wv.Version(), series(wv.Version()), ErrNotFound, have)
	}
	sort.SliceStable(later, func(i, j int) bool { return debLess(later[i], later[j]) })
	return later[0], nil
}

// series is the first two parts of an upstream version: "6.1" of "6.1.190".
func series(upstream string) string {
	parts := strings.SplitN(upstream, ".", 3)
	if len(parts) < 2 {
		return upstream
	}
	return parts[0] + "." + parts[1]
}

func sameSeries(a, b string) bool { return series(a) == series(b) }

// newest returns the highest Debian version of vs (len(vs) > 0).
func newest(vs []string) string {
	sorted := append([]string(nil), vs...)
	sort.SliceStable(sorted, func(i, j int) bool { return debLess(sorted[i], sorted[j]) })
	return sorted[len(sorted)-1]
}

func debLess(a, b string) bool {
	va, errA := debversion.NewVersion(a)
	vb, errB := debversion.NewVersion(b)
	if errA != nil || errB != nil {
		return a < b
	}
	return va.LessThan(vb)
}

// versions returns the versions apt knows of package name, running
// apt-get update once if it knows none.
func (c *aptClient) versions(ctx context.Context, name string) ([]string, error) {
	for {
		out, err := exec.CommandContext(ctx, "apt-cache", "show", name).Output()
		if err != nil && !isAptNotFound(err) {
			return nil, fmt.Errorf("apt-cache show %s: %w", name, exitDetail(err))
		}
		vs := parseAptShow(out, name)
		if len(vs) > 0 || c.updated {
			return vs, nil
		}
		if err := c.update(ctx); err != nil {
			return nil, err
		}
	}
}

func (c *aptClient) update(ctx context.Context) error {
	c.updated = true
	fmt.Fprintln(c.out, "kpkg: apt-get update")
	cmd := exec.CommandContext(ctx, "apt-get", "update", "-q")
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get update (needs root and Debian's mirror): %w", err)
	}
	return nil
}

// isAptNotFound reports whether apt-cache failed because it knows no such
// package: it exits 100 with "E: No packages found".
func isAptNotFound(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == 100
}

func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}

// parseAptShow returns the distinct Version fields of the paragraphs of
// package name in apt-cache show output, in order of appearance.
func parseAptShow(out []byte, name string) []string {
	var vs []string
	seen := map[string]bool{}
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			pkg = ""
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			pkg = v
		case "Version":
			if pkg == name && !seen[v] {
				seen[v] = true
				vs = append(vs, v)
			}
		}
	}
	return vs
}

// debFileVersion splits a .deb file name as apt-get download writes it,
// name_version_arch.deb with ':' escaped as %3a, into name and version.
func debFileVersion(file string) (name, version string, ok bool) {
	base := strings.TrimSuffix(filepath.Base(file), ".deb")
	if base == filepath.Base(file) {
		return "", "", false
	}
	parts := strings.Split(base, "_")
	if len(parts) != 3 {
		return "", "", false
	}
	return parts[0], strings.ReplaceAll(parts[1], "%3a", ":"), true
}

func escapeVersion(v string) string { return strings.ReplaceAll(v, ":", "%3a") }

// cachedVersions lists the versions of package name in the .deb folder.
func cachedVersions(debs, name string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(debs, name+"_*.deb"))
	if err != nil {
		return nil, err
	}
	var vs []string
	for _, f := range files {
		if n, v, ok := debFileVersion(f); ok && n == name {
			vs = append(vs, v)
		}
	}
	return vs, nil
}

// deb returns the path of name=version's .deb in the cache, downloading it
// with apt-get download if it is not there yet.
func (c *aptClient) deb(ctx context.Context, name, version string) (string, error) {
	pattern := filepath.Join(c.debs, name+"_"+escapeVersion(version)+"_*.deb")
	if m, _ := filepath.Glob(pattern); len(m) > 0 {
		return m[0], nil
	}
	if err := os.MkdirAll(c.debs, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(c.debs, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for {
		fmt.Fprintf(c.out, "kpkg: apt-get download %s=%s\n", name, version)
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", name+"="+version)
		cmd.Dir = tmp
		cmd.Stdout, cmd.Stderr = c.out, io.MultiWriter(c.out, &stderr)
		err := cmd.Run()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if !c.updated {
			if err := c.update(ctx); err != nil {
				return "", err
			}
			continue
		}
		detail := strings.TrimSpace(stderr.String())
		if strings.Contains(detail, "Unable to locate") || strings.Contains(detail, "not found") {
			return "", fmt.Errorf("apt-get download %s=%s: %w: %s", name, version, ErrNotFound, detail)
		}
		return "", fmt.Errorf("apt-get download %s=%s: %w: %s", name, version, err, detail)
	}
	m, _ := filepath.Glob(filepath.Join(tmp, name+"_"+escapeVersion(version)+"_*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s: no .deb file came out", name, version)
	}
	dst := filepath.Join(c.debs, filepath.Base(m[0]))
	if err := os.Rename(m[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}
