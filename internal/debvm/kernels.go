package debvm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/internal/kpkg"
)

// Kernel is one Debian kernel image package in the cache.
type Kernel struct {
	ABI     string // uname -r, e.g. "6.1.0-56-amd64"
	Package string // linux-image-6.1.0-56-amd64
	Version string // Debian package version, e.g. "6.1.192-2"
	Deb     string // the .deb file in the cache
}

// Kernels are the builds the tests move between: Old is installed in the
// base image and pinned as GRUB's default, New goes into the local apt
// repository with Meta, the linux-image-amd64 metapackage of its version.
// Older, the ABI before Old, is installed in the image too (not the
// default), as on a host that has been around: a cleanup has something to
// remove.
type Kernels struct {
	Older, Old, New Kernel
	Meta            string // linux-image-amd64_<New.Version>_amd64.deb
}

// NewDebs returns the .deb files of the newer kernel, for Repo.
func (k Kernels) NewDebs() []string { return []string{k.New.Deb, k.Meta} }

var imagePkgRE = regexp.MustCompile(`^linux-image-(\d+)\.(\d+)\.(\d+)-(\d+)-amd64$`)

// FetchKernels returns the newest three kernel ABIs Debian's archive offers
// (linux-image-6.1.0-NN-amd64, by NN), downloading their image packages and
// the newer one's metapackage with apt-get download into
// <cacheDir>/debvm/debs. The choice is remembered in kernels.json there and
// reused while its files are present, so the base image stays the same when
// the archive moves on; delete the file to move to newer kernels.
func FetchKernels(ctx context.Context, cacheDir string) (Kernels, error) {
	dir := filepath.Join(cacheDir, "debvm", "debs")
	unlock, err := kpkg.Lock(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return Kernels{}, err
	}
	defer unlock()
	state := filepath.Join(dir, "kernels.json")
	if b, err := os.ReadFile(state); err == nil {
		var k Kernels
		if json.Unmarshal(b, &k) == nil && exists(k.Older.Deb) && exists(k.Old.Deb) && exists(k.New.Deb) && exists(k.Meta) {
			return k, nil
		}
	}
	k, err := pickKernels(ctx)
	if err != nil {
		return Kernels{}, err
	}
	for _, p := range []*Kernel{&k.Older, &k.Old, &k.New} {
		if p.Deb, err = aptDownload(ctx, dir, p.Package, p.Version); err != nil {
			return Kernels{}, err
		}
	}
	if k.Meta, err = aptDownload(ctx, dir, "linux-image-amd64", k.New.Version); err != nil {
		return Kernels{}, fmt.Errorf("%w (the metapackage must be at the newer kernel's version %s)", err, k.New.Version)
	}
	b, _ := json.MarshalIndent(k, "", "  ")
	if err := atomicfile.Write(state, append(b, '\n'), 0o644); err != nil {
		return Kernels{}, err
	}
	return k, nil
}

// pickKernels asks apt for the image packages it knows and takes the
// newest three ABIs that have a candidate version.
func pickKernels(ctx context.Context) (Kernels, error) {
	list := func() ([]string, error) {
		out, err := exec.CommandContext(ctx, "apt-cache", "search", "--names-only", `^linux-image-[0-9.]+-[0-9]+-amd64$`).Output()
		if err != nil {
			return nil, fmt.Errorf("apt-cache search linux-image: %w", err)
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			if name, _, ok := strings.Cut(l, " - "); ok && imagePkgRE.MatchString(name) {
				names = append(names, name)
			}
		}
		return names, nil
	}
	names, err := list()
	if err == nil && len(names) < 3 {
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return Kernels{}, fmt.Errorf("apt-get update: %w: %s", uerr, strings.TrimSpace(string(out)))
		}
		names, err = list()
	}
	if err != nil {
		return Kernels{}, err
	}
	sortABIs(names)
	var found []Kernel
	for i := len(names) - 1; i >= 0 && len(found) < 3; i-- {
		v, err := candidate(ctx, names[i])
		if err != nil || v == "" {
			continue // known by name only (e.g. an old index entry)
		}
		found = append(found, Kernel{ABI: strings.TrimPrefix(names[i], "linux-image-"), Package: names[i], Version: v})
	}
	if len(found) < 3 {
		return Kernels{}, fmt.Errorf("debvm: apt offers %d installable linux-image-*-amd64 packages (%v), the tests need three ABIs: check /etc/apt/sources.list* reach Debian's archive (bookworm and bookworm-security) or seed %s by hand", len(found), names, "$STENT_CACHE/debvm/debs with kernels.json")
	}
	return Kernels{Older: found[2], Old: found[1], New: found[0]}, nil
}

// sortABIs orders linux-image-X.Y.Z-N-amd64 names by (X, Y, Z, N).
func sortABIs(names []string) {
	key := func(s string) [4]int {
		var k [4]int
		m := imagePkgRE.FindStringSubmatch(s)
		for i := range k {
			if m != nil {
				k[i], _ = strconv.Atoi(m[i+1])
			}
		}
		return k
	}
	sort.SliceStable(names, func(i, j int) bool {
		a, b := key(names[i]), key(names[j])
		for n := range a {
			if a[n] != b[n] {
				return a[n] < b[n]
			}
		}
		return false
	})
}

// candidate returns apt's candidate version of pkg ("" when none).
func candidate(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "policy", pkg).Output()
	if err != nil {
		return "", err
	}
	return parseCandidate(string(out)), nil
}

func parseCandidate(policy string) string {
	for _, l := range strings.Split(policy, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "(none)" {
				return ""
			}
			return v
		}
	}
	return ""
}

// aptDownload returns the cached .deb of pkg at version, downloading it.
func aptDownload(ctx context.Context, dir, pkg, version string) (string, error) {
	file := filepath.Join(dir, pkg+"_"+strings.ReplaceAll(version, ":", "%3a")+"_amd64.deb")
	if exists(file) {
		return file, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+"="+version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %w: %s (is it still in Debian's archive? put the .deb in %s)", pkg, version, err, strings.TrimSpace(string(out)), dir)
	}
	if !exists(file) {
		return "", fmt.Errorf("apt-get download %s=%s: no %s afterwards", pkg, version, file)
	}
	return file, nil
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}
