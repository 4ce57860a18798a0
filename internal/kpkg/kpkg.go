// Package kpkg fetches Debian kernel packages into Stent's cache and unpacks
// them where they can be built against without installing anything.
//
// It is production code: `stent build` (package build) gets the kernel a
// live patch is built for through Fetch, keeps its download cache in
// CacheDir and serialises builds with Lock. The QEMU tests (internal/vmtest,
// internal/debvm), the demo and the benchmarks use the same kernels to boot
// them and to build test modules against their headers. It is internal
// because its API is the builder's, not a library's.
//
// Fetch downloads (with apt-get download, or takes from $STENT_CACHE/debs)
// the linux-image, linux-headers and linux-kbuild packages of one Debian
// kernel ABI, unpacks them with dpkg-deb -x into
// $STENT_CACHE/kernels/<abi>/root and repairs the absolute paths the headers
// carry, so that
//
//	make -C <Kernel.HeadersDir> M=<dir> modules
//
// works against the extraction without installing anything system-wide.
//
// What was checked on Debian 12 with 6.1.0-55-amd64 and 6.1.0-56-amd64:
//   - The headers' top Makefile is one line,
//     "include /usr/src/linux-headers-<abi-number>-common/Makefile"; the common
//     Makefile derives the source tree from its own path. Fetch rewrites the
//     line to a path relative to the Makefile itself.
//   - scripts and tools in the headers folders are relative links to
//     ../../lib/linux-kbuild-6.1 in these versions; lib/modules/<abi>/build
//     and source are absolute. Fetch turns every absolute link into a
//     relative one inside the extraction.
//   - linux-kbuild-6.1 is one package for all 6.1 ABIs and the archive keeps
//     only its newest version, so an older ABI (6.1.0-55, package 6.1.192-1)
//     gets the kbuild of the same upstream release (6.1.192-2) when its own
//     version is gone. The kbuild tools only depend on the upstream release.
//     When no kbuild of that upstream release is left either (6.1.0-54,
//     6.1.190-1, once 6.1.192 was out), the oldest kbuild of a later
//     release of the series is used (6.1.192-3): modpost still checks the
//     module against the ABI's own Module.symvers.
//   - The image package's System.map is a one-line stub (the real one is in
//     the -dbg package); use /proc/kallsyms in the guest instead.
//   - Unpacking the four packages (about 450 MB, mostly the image's
//     modules) takes 4-8 s; a fetch that downloads them from Debian's mirror
//     took 8 s here; a cached Fetch only reads kernel.json.
//   - .deb files are kept in $STENT_CACHE/debs (which may be seeded by
//     hand) and taken from there before asking apt.
package kpkg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrNotFound is returned (wrapped) when apt knows no package for an ABI or
// version, even after apt-get update.
var ErrNotFound = errors.New("kernel package not found")

// Kernel is one Debian kernel unpacked in the cache. All paths are absolute.
type Kernel struct {
	ABI            string // Debian ABI, e.g. "6.1.0-56-amd64"
	Release        string // uname -r; the same as ABI for Debian kernels
	PackageVersion string // Debian package version, e.g. "6.1.192-2"
	KbuildVersion  string // version of the linux-kbuild package used
	Root           string // the folder every package was extracted into
	Vmlinuz        string // boot/vmlinuz-<release>
	Config         string // boot/config-<release>
	SystemMap      string // boot/System.map-<release> (a stub in Debian's image)
	ModulesDir     string // lib/modules/<release>
	HeadersDir     string // usr/src/linux-headers-<release>, for make -C
}

// abi is a parsed Debian kernel ABI such as "6.1.0-56-amd64".
type abi struct {
	full     string // 6.1.0-56-amd64
	number   string // 6.1.0-56
	series   string // 6.1
	flavour  string // amd64, cloud-amd64, rt-amd64
	commonPk string // linux-headers-6.1.0-56-common(-rt)
}

var abiRE = regexp.MustCompile(`^((\d+\.\d+)\.\d+-\d+)-([a-z0-9]+(?:-[a-z0-9]+)*)$`)

func parseABI(s string) (abi, error) {
	m := abiRE.FindStringSubmatch(s)
	if m == nil {
		return abi{}, fmt.Errorf("kernel ABI %q: want the form 6.1.0-56-amd64 (uname -r of a Debian kernel)", s)
	}
	a := abi{full: s, number: m[1], series: m[2], flavour: m[3]}
	a.commonPk = "linux-headers-" + a.number + "-common"
	if strings.HasPrefix(a.flavour, "rt-") {
		a.commonPk += "-rt"
	}
	return a, nil
}

func (a abi) imagePkg() string   { return "linux-image-" + a.full }
func (a abi) headersPkg() string { return "linux-headers-" + a.full }
func (a abi) kbuildPkg() string  { return "linux-kbuild-" + a.series }

// RepoRoot returns the folder holding go.mod, found by walking up from the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory; set STENT_CACHE")
		}
		dir = parent
	}
}

// CacheDir returns Stent's cache root: $STENT_CACHE, or <repo>/.cache.
func CacheDir() (string, error) {
	if d := os.Getenv("STENT_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	repo, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(repo, ".cache"), nil
}

// Fetch returns the kernel of the Debian ABI abi (e.g. "6.1.0-56-amd64"),
// downloading and unpacking its packages into the cache first if needed.
// Progress messages go to progress, which may be nil. Fetch is idempotent and
// safe to call from several processes at once.
func Fetch(ctx context.Context, abi string, progress io.Writer) (*Kernel, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	return fetch(ctx, cache, abi, progress)
}

func fetch(ctx context.Context, cache, abiStr string, progress io.Writer) (*Kernel, error) {
	if progress == nil {
		progress = io.Discard
	}
	a, err := parseABI(abiStr)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "kernels", a.full)
	if k, err := loadKernel(dir); err == nil {
		return k, nil
	}

	unlock, err := Lock(ctx, filepath.Join(cache, "locks", "kernel-"+a.full+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k, err := loadKernel(dir); err == nil {
		return k, nil // another process finished it while we waited
	}

	debs := filepath.Join(cache, "debs")
	apt := &aptClient{debs: debs, out: progress}
	fmt.Fprintf(progress, "kpkg: fetching kernel %s\n", a.full)
	version, err := apt.imageVersion(ctx, a)
	if err != nil {
		return nil, err
	}
	kbuildVersion, err := apt.kbuildVersion(ctx, a, version)
	if err != nil {
		return nil, err
	}
	want := []struct{ name, version string }{
		{a.imagePkg(), version},
		{a.headersPkg(), version},
		{a.commonPk, version},
		{a.kbuildPkg(), kbuildVersion},
	}
	var files []string
	for _, p := range want {
		f, err := apt.deb(ctx, p.name, p.version)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}

	if err := unpack(ctx, dir, files, progress); err != nil {
		return nil, err
	}
	k := newKernel(dir, a.full, version, kbuildVersion)
	if err := saveKernel(dir, k); err != nil {
		return nil, err
	}
	if err := commitDir(dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "kpkg: kernel %s (%s) ready in %s\n", a.full, version, dir)
	return loadKernel(dir)
}

func newKernel(dir, release, version, kbuildVersion string) *Kernel {
	root := filepath.Join(dir, "root")
	return &Kernel{
		ABI:            release,
		Release:        release,
		PackageVersion: version,
		KbuildVersion:  kbuildVersion,
		Root:           root,
		Vmlinuz:        filepath.Join(root, "boot", "vmlinuz-"+release),
		Config:         filepath.Join(root, "boot", "config-"+release),
		SystemMap:      filepath.Join(root, "boot", "System.map-"+release),
		ModulesDir:     filepath.Join(root, "lib", "modules", release),
		HeadersDir:     filepath.Join(root, "usr", "src", "linux-headers-"+release),
	}
}

// kernelMeta is kernel.json, written last into a kernel's folder: its
// presence marks the folder complete.
type kernelMeta struct {
	ABI            string `json:"abi"`
	PackageVersion string `json:"package_version"`
	KbuildVersion  string `json:"kbuild_version"`
}

func saveKernel(dir string, k *Kernel) error {
	b, err := json.MarshalIndent(kernelMeta{k.ABI, k.PackageVersion, k.KbuildVersion}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(tmpDirFor(dir), "kernel.json"), append(b, '\n'), 0o644)
}

func loadKernel(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var m kernelMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s/kernel.json: %w", dir, err)
	}
	if filepath.Base(dir) != m.ABI {
		return nil, fmt.Errorf("read %s/kernel.json: ABI %q does not match the folder", dir, m.ABI)
	}
	return newKernel(dir, m.ABI, m.PackageVersion, m.KbuildVersion), nil
}
