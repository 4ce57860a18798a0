package debvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/stent-dev/stent/internal/kpkg"
)

// Repo builds a flat apt repository (the .deb files, Packages, Release,
// made with apt-ftparchive) from debs into <cacheDir>/debvm/repo-<key>,
// once per set of files. A guest uses it as RepoSource once ServeRepo
// serves it and Config.Repo names the address.
func Repo(ctx context.Context, cacheDir string, debs []string) (string, error) {
	if len(debs) == 0 {
		return "", errors.New("debvm: Repo: no .deb files given")
	}
	h := sha256.New()
	for _, d := range debs {
		fi, err := os.Stat(d)
		if err != nil {
			return "", fmt.Errorf("debvm: Repo: %w", err)
		}
		if !strings.HasSuffix(d, ".deb") || !fi.Mode().IsRegular() {
			return "", fmt.Errorf("debvm: Repo: %s is not a .deb file", d)
		}
		fmt.Fprintf(h, "%s %d %d\n", filepath.Base(d), fi.Size(), fi.ModTime().UnixNano())
	}
	dir := filepath.Join(cacheDir, "debvm", "repo-"+hex.EncodeToString(h.Sum(nil))[:16])
	if exists(filepath.Join(dir, "Release")) {
		return dir, nil
	}
	unlock, err := kpkg.Lock(ctx, dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if exists(filepath.Join(dir, "Release")) {
		return dir, nil
	}
	if _, err := exec.LookPath("apt-ftparchive"); err != nil {
		return "", errors.New("debvm: apt-ftparchive not found: install apt-utils (make deps)")
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	for _, d := range debs {
		dst := filepath.Join(tmp, filepath.Base(d))
		if err := os.Link(d, dst); err != nil {
			b, rerr := os.ReadFile(d)
			if rerr != nil {
				return "", rerr
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				return "", err
			}
		}
	}
	for _, step := range []struct {
		args []string
		out  string
	}{
		{[]string{"packages", "."}, "Packages"},
		{[]string{"release", "."}, "Release"},
	} {
		cmd := exec.CommandContext(ctx, "apt-ftparchive", step.args...)
		cmd.Dir = tmp
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("debvm: apt-ftparchive %s: %w", step.args[0], err)
		}
		if err := os.WriteFile(filepath.Join(tmp, step.out), out, 0o644); err != nil {
			return "", err
		}
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// ServeRepo serves dir over HTTP on 127.0.0.1 (a port of the kernel's
// choice) until stop is called or ctx is done. Pass
// "127.0.0.1:<port>" as Config.Repo.
func ServeRepo(ctx context.Context, dir string) (port int, stop func(), err error) {
	if !exists(filepath.Join(dir, "Packages")) {
		return 0, nil, fmt.Errorf("debvm: ServeRepo: %s has no Packages file (build it with Repo)", dir)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(ctx)
	go func() { <-ctx.Done(); srv.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, cancel, nil
}
