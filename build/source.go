package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
)

// ErrSourceUnavailable is wrapped when the distribution archive no longer
// carries the source package of a kernel (Debian keeps only the newest
// linux-source of a series).
var ErrSourceUnavailable = errors.New("kernel source package not available")

// sourceSeries returns the linux-source series of a package version:
// "6.1.192-2" -> "6.1".
func sourceSeries(version string) (string, error) {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" {
		return "", fmt.Errorf("package version %q: want the form 6.1.192-2", version)
	}
	return parts[0] + "." + parts[1], nil
}

// Source returns the pristine kernel source tree of Debian package version
// version (linux-source-<series>), downloading the package into
// <cache>/debs and extracting it into <cache>/source/<version>/tree on first
// use. The extraction happens in a temporary folder renamed into place, under
// a lock, so concurrent builds share one copy and a killed build leaves none
// half-made. Progress messages go to progress, which may be nil.
func Source(ctx context.Context, cache, version string, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	series, err := sourceSeries(version)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "source", version)
	tree := filepath.Join(dir, "tree")
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return tree, nil
	}
	unlock, err := kpkg.Lock(ctx, filepath.Join(cache, "locks", "source-"+version+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(done); err == nil {
		return tree, nil
	}
	pkg := "linux-source-" + series
	deb, err := downloadDeb(ctx, filepath.Join(cache, "debs"), pkg, version, progress)
	if err != nil {
		return "", err
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	fmt.Fprintf(progress, "source: extracting %s\n", filepath.Base(deb))
	// dpkg-deb --fsys-tarfile | tar -xO <the .tar.xz> | tar -xJ: the
	// 140 MB tarball inside the package never touches the disk.
	inner := "./usr/src/" + pkg + ".tar.xz"
	script := `set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO -f - "$2" | tar -xJ -f - -C "$3"`
	cmd := groupCommand(ctx, "bash", "-c", script, "extract", deb, inner, tmp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := runGroup(ctx, cmd); err != nil {
		os.RemoveAll(tmp)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("extract %s from %s: %w: %s", inner, deb, err, strings.TrimSpace(stderr.String()))
	}
	top := filepath.Join(tmp, pkg)
	if _, err := os.Stat(filepath.Join(top, "Makefile")); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("extract %s: no %s/Makefile in the tarball", deb, pkg)
	}
	if err := os.Rename(top, filepath.Join(tmp, "tree")); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(version+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("commit %s: %w", dir, err)
	}
	fmt.Fprintf(progress, "source: %s extracted in %.1fs\n", pkg, time.Since(start).Seconds())
	return tree, nil
}

// downloadDeb returns the cached .deb of name=version, fetching it with
// apt-get download (running apt-get update once if apt does not know it).
func downloadDeb(ctx context.Context, debs, name, version string, progress io.Writer) (string, error) {
	pattern := filepath.Join(debs, name+"_"+strings.ReplaceAll(version, ":", "%3a")+"_*.deb")
	if m, _ := filepath.Glob(pattern); len(m) > 0 {
		return m[0], nil
	}
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(debs, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	updated := false
	for {
		fmt.Fprintf(progress, "source: apt-get download %s=%s\n", name, version)
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", name+"="+version)
		cmd.Dir = tmp
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		err := cmd.Run()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if !updated {
			updated = true
			fmt.Fprintln(progress, "source: apt-get update")
			if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
				return "", fmt.Errorf("apt-get update: %w: %s", err, lastLines(string(out), 5))
			}
			continue
		}
		detail := strings.TrimSpace(stderr.String())
		return "", fmt.Errorf("apt-get download %s=%s: %w: %s (the archive keeps only the newest source of a series: pass --source DIR with the kernel's source tree)",
			name, version, ErrSourceUnavailable, detail)
	}
	m, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s: found %d .deb files", name, version, len(m))
	}
	dst := filepath.Join(debs, filepath.Base(m[0]))
	if err := os.Rename(m[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
