// Package pkgbuild builds Stent's distribution packages, .deb and .rpm,
// with nfpm (github.com/goreleaser/nfpm) from the binaries of `make build`,
// the systemd units in deploy/systemd and the maintainer scripts in
// deploy/package, laid out as `make install` installs them:
//
//   - stent, for every host: /usr/sbin/stent, /usr/lib/stent/stent-tools,
//     the host's units (agent, load-persisted, shutdown-mark, confirm timer),
//     /etc/stent/keys and the docs in /usr/share/doc/stent;
//   - stent-server, for the control server: /usr/bin/stent-server, its unit
//     and /etc/default/stent-server (a conffile).
//
// `make package` runs it through ./internal/tools/mkpkg; tests call
// Build. docs/packaging.md describes the packages and the upgrade path.
package pkgbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// Names of the packages.
const (
	Host   = "stent"
	Server = "stent-server"
)

// Formats are the package formats Build writes.
var Formats = []string{"deb", "rpm"}

// Options say what Build packages and where it writes.
type Options struct {
	// OutDir receives the packages (made if missing). Required.
	OutDir string
	// SrcDir is the repository's root (README.md, docs/, deploy/); empty
	// means the source tree this package was compiled from.
	SrcDir string
	// BinDir holds stent, stent-tools and stent-server for GOARCH; empty
	// means Build compiles them (go build ./cmd/..., stamped with Version
	// as `make build` does) into a temporary folder.
	BinDir string
	// Version is `git describe --tags --always --dirty` output or a plain
	// version (1.2.3); empty means git describe in SrcDir. See
	// PackageVersion for how it becomes the packages' version.
	Version string
	// Formats to write; empty means all of Formats.
	Formats []string
}

// Package is one written package file.
type Package struct {
	Name    string // Host or Server
	Format  string // deb or rpm
	Version string // the package version (without rpm's release)
	Path    string // the file, in OutDir
}

// Result lists what Build wrote.
type Result struct {
	Version  string // the packages' version
	Packages []Package
}

// Path returns the file of package name in format, or "" if Build did not
// write it.
func (r Result) Path(name, format string) string {
	for _, p := range r.Packages {
		if p.Name == name && p.Format == format {
			return p.Path
		}
	}
	return ""
}

// Build writes the stent and stent-server packages in every format of
// opts.Formats to opts.OutDir, replacing files of the same name. Nothing
// is written unless every input is there and valid.
func Build(ctx context.Context, opts Options) (Result, error) {
	if opts.OutDir == "" {
		return Result{}, errors.New("pkgbuild: no output folder given")
	}
	formats := opts.Formats
	if len(formats) == 0 {
		formats = Formats
	}
	for _, f := range formats {
		if !slices.Contains(Formats, f) {
			return Result{}, fmt.Errorf("pkgbuild: unknown package format %q (want %s)", f, strings.Join(Formats, " or "))
		}
	}
	src := opts.SrcDir
	if src == "" {
		var err error
		if src, err = sourceDir(); err != nil {
			return Result{}, err
		}
	}
	describe := opts.Version
	if describe == "" {
		out, err := git(ctx, src, "describe", "--tags", "--always", "--dirty")
		if err != nil {
			return Result{}, fmt.Errorf("pkgbuild: version: %w (give a version)", err)
		}
		describe = out
	}
	commits := 0
	if describeBare.MatchString(describe) {
		out, err := git(ctx, src, "rev-list", "--count", "HEAD")
		if err == nil {
			commits, _ = strconv.Atoi(out)
		}
	}
	version, err := PackageVersion(describe, commits)
	if err != nil {
		return Result{}, fmt.Errorf("pkgbuild: %w", err)
	}

	bin := opts.BinDir
	if bin == "" {
		tmp, err := os.MkdirTemp("", "stent-pkgbuild-bin")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(tmp)
		if err := buildBinaries(ctx, src, tmp, describe); err != nil {
			return Result{}, err
		}
		bin = tmp
	}

	specs, err := packageSpecs(src, bin, version)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("pkgbuild: %w", err)
	}
	res := Result{Version: version}
	for _, s := range specs {
		for _, f := range formats {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
			path, err := write(s, f, opts.OutDir)
			if err != nil {
				return Result{}, fmt.Errorf("pkgbuild: %s %s: %w", s.name, f, err)
			}
			res.Packages = append(res.Packages, Package{Name: s.name, Format: f, Version: version, Path: path})
		}
	}
	return res, nil
}

// write builds one package file in dir through a temporary file, so that
// a failure leaves no half-written package behind.
func write(s spec, format, dir string) (string, error) {
	info := s.info(format)
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", err
	}
	path := filepath.Join(dir, packager.ConventionalFileName(info))
	f, err := os.CreateTemp(dir, ".pkgbuild-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if err := packager.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// sourceDir is the repository root of the tree this file was compiled
// from: two folders above internal/pkgbuild.
func sourceDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("pkgbuild: cannot locate the source tree; give Options.SrcDir")
	}
	dir := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if _, err := os.Stat(filepath.Join(dir, "deploy", "systemd")); err != nil {
		return "", fmt.Errorf("pkgbuild: source tree %s has no deploy/systemd; give Options.SrcDir", dir)
	}
	return dir, nil
}

// buildBinaries compiles ./cmd/... into dir as `make build` does.
func buildBinaries(ctx context.Context, src, dir, describe string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build",
		"-ldflags", "-X github.com/stent-dev/stent/internal/version.stamped="+describe,
		"-o", dir+string(filepath.Separator), "./cmd/...")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pkgbuild: go build ./cmd/...: %w\n%s", err, out)
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s in %s: %w", strings.Join(args, " "), dir, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// files.Content helpers.

func file(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, Type: files.TypeFile,
		FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
}

func dir(dst string, mode os.FileMode) *files.Content {
	return &files.Content{Destination: dst, Type: files.TypeDir,
		FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
}

func conffile(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, Type: files.TypeConfigNoReplace,
		FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
}
