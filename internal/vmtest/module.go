package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stent-dev/stent/internal/kpkg"
)

// ModuleSourceDir returns the folder of the test module name,
// <repo>/testdata/kmod/<name>.
func ModuleSourceDir(name string) (string, error) {
	repo, err := kpkg.RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(repo, "testdata", "kmod", name)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("test module %q: no folder %s", name, dir)
	}
	return dir, nil
}

// sharedDir is the folder of testdata/kmod whose files every test module
// may use: Kbuild files add it to the include path as $(src)/../include.
const sharedDir = "include"

// BuildModule builds the test module testdata/kmod/<name> against k's
// headers and returns the path of the .ko file. Builds are cached in
// $STENT_CACHE/kmod/<abi>/<name>-<hash>, keyed by the sources (the
// module's folder and the shared include folder) and the kernel package,
// and safe to run from parallel test processes.
func BuildModule(ctx context.Context, k *kpkg.Kernel, name string) (koPath string, err error) {
	src, err := ModuleSourceDir(name)
	if err != nil {
		return "", err
	}
	kmodDir := filepath.Dir(src)
	files, sum, err := hashSources(kmodDir, []string{name, sharedDir}, k)
	if err != nil {
		return "", err
	}
	cache, err := kpkg.CacheDir()
	if err != nil {
		return "", err
	}
	outDir := filepath.Join(cache, "kmod", k.ABI, name+"-"+sum[:16])
	ko := filepath.Join(outDir, name+".ko")
	if _, err := os.Stat(ko); err == nil {
		return ko, nil
	}
	unlock, err := kpkg.Lock(ctx, filepath.Join(cache, "locks", "kmod-"+k.ABI+"-"+name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(ko); err == nil {
		return ko, nil
	}

	if err := os.MkdirAll(filepath.Dir(outDir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(outDir), ".build-"+name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// The same layout as testdata/kmod, so that $(src)/../include works
	// here as it does for a build by hand.
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(kmodDir, f))
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Join(tmp, filepath.Dir(f)), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			return "", err
		}
	}
	build := filepath.Join(tmp, name)
	if err := os.MkdirAll(build, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "make", "-C", k.HeadersDir, "M="+build, "modules")
	cmd.Env = makeEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build module %s for %s: %w\n%s", name, k.ABI, err, bytes.TrimSpace(out))
	}
	if _, err := os.Stat(filepath.Join(build, name+".ko")); err != nil {
		return "", fmt.Errorf("build module %s for %s: no %s.ko came out\n%s", name, k.ABI, name, out)
	}
	// Without debug information, as distributions ship modules (Debian's
	// are 20-30 times smaller for it): what hosts load is what tests load.
	cmd = exec.CommandContext(ctx, "strip", "--strip-debug", filepath.Join(build, name+".ko"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("strip module %s: %w\n%s", name, err, bytes.TrimSpace(out))
	}
	if err := os.Rename(build, outDir); err != nil {
		return "", fmt.Errorf("build module %s: %w", name, err)
	}
	return ko, nil
}

// hashSources lists the regular files of the folders dirs of base (no
// subfolders; a missing folder has none), as paths relative to base, and
// hashes them together with the kernel's identity.
func hashSources(base string, dirs []string, k *kpkg.Kernel) (files []string, sum string, err error) {
	for _, d := range dirs {
		ents, err := os.ReadDir(filepath.Join(base, d))
		if err != nil && !os.IsNotExist(err) {
			return nil, "", err
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(d, e.Name()))
			}
		}
	}
	sort.Strings(files)
	h := sha256.New()
	fmt.Fprintf(h, "abi=%s\nversion=%s\nkbuild=%s\nstrip=debug\n", k.ABI, k.PackageVersion, k.KbuildVersion)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(base, f))
		if err != nil {
			return nil, "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}

// makeEnv is the environment for kbuild: without the make variables of an
// outer make (make test), whose jobserver this process does not share.
func makeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR":
			continue
		}
		env = append(env, kv)
	}
	return env
}
