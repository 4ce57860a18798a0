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
	"slices"
	"strings"

	"github.com/stent-dev/stent/internal/kpkg"
)

// Repo builds a flat apt repository (the .deb files, Packages, Release,
// made with apt-ftparchive) from debs into <cacheDir>/debvm/repo-<key>,
// once per set of files. A guest uses it as RepoSource once ServeRepo
// serves it and Config.Repo names the address.
//
// Packages whose files are xz-compressed (Debian's kernel images) are
// served recompressed with zstd (zstdDeb): the same control archive and
// the same file tree, byte for byte; only the data member's compression
// differs. Unpacking xz alone took 47 s of a guest's CPU under emulation
// for one kernel image, zstd a few seconds.
func Repo(ctx context.Context, cacheDir string, debs []string) (string, error) {
	if len(debs) == 0 {
		return "", errors.New("debvm: Repo: no .deb files given")
	}
	h := sha256.New()
	fmt.Fprintf(h, "debvm repo %s\n", repoFormat)
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
		if recompressed, err := zstdDeb(ctx, d, dst); err != nil {
			return "", err
		} else if recompressed {
			continue
		}
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
		{slices.Concat(ftparchiveHashes, []string{"packages", "."}), "Packages"},
		{slices.Concat(ftparchiveHashes, []string{"release", "."}), "Release"},
	} {
		cmd := exec.CommandContext(ctx, "apt-ftparchive", step.args...)
		cmd.Dir = tmp
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("debvm: apt-ftparchive %s: %w", step.args[len(step.args)-2], err)
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

// repoFormat changes when what Repo writes changes.
const repoFormat = "3" // data.tar.xz served as data.tar.zst; SHA256 alone

// ftparchiveHashes makes apt-ftparchive list SHA256 alone, as its default
// of MD5, SHA1, SHA256 and SHA512 has a guest's apt compute all four over
// each download: about 10 s of an emulated CPU for one kernel image.
var ftparchiveHashes = []string{"-o", "APT::FTPArchive::MD5=false", "-o", "APT::FTPArchive::SHA1=false", "-o", "APT::FTPArchive::SHA512=false"}

// zstdDeb writes src to dst with its data member recompressed from xz to
// zstd (dpkg reads zstd since 1.21.18; bookworm has 1.21.22), with ar, xz
// and zstd. It does nothing and reports false when src's data member is
// not xz.
func zstdDeb(ctx context.Context, src, dst string) (bool, error) {
	out, err := exec.CommandContext(ctx, "ar", "t", src).Output()
	if err != nil {
		return false, fmt.Errorf("debvm: ar t %s: %w (binutils installed? make deps)", src, err)
	}
	members := strings.Fields(string(out))
	if len(members) != 3 || members[0] != "debian-binary" || members[2] != "data.tar.xz" {
		return false, nil
	}
	work, err := os.MkdirTemp(filepath.Dir(dst), ".zstd-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(work)
	script := `set -e -o pipefail
ar x "$1"
xz -dc data.tar.xz | zstd -q -9 -T0 -o data.tar.zst
ar rcD "$2" debian-binary "$3" data.tar.zst`
	cmd := exec.CommandContext(ctx, "bash", "-c", script, "zstd-deb", src, dst, members[1])
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("debvm: recompress %s with zstd: %w: %s (xz-utils and zstd installed? make deps)", src, err, strings.TrimSpace(string(out)))
	}
	return true, nil
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
