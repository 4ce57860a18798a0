// Command benchbuild measures stent build (make bench-build): a one-file
// fix (build/testdata/patches/cmdline.patch) built for Debian's
// 6.1.0-56-amd64 first from a fresh cache (kernel packages unpacked, source
// package downloaded and extracted, tree prepared), then a fix to another
// file on the prepared tree (both objects compiled), then the first fix
// again with everything cached (only the patched object compiled). It runs the stent binary as a child, reads the step
// times from its --json output, and reports wall time and peak memory
// (ru_maxrss from wait4: the largest process among stent and the make, gcc,
// tar and xz it runs).
//
// The fresh cache is a new folder seeded only with the .deb files already
// in $STENT_CACHE/debs (linked, not copied), so the kernel packages are not
// downloaded again but everything else is done from scratch; the
// linux-source package is downloaded unless it is already there (-download
// removes it from the seed to count the download too).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/loadavg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "benchbuild:", err)
		os.Exit(1)
	}
}

type step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

type result struct {
	Steps     []step `json:"steps"`
	Functions []struct {
		Name string `json:"name"`
	} `json:"functions"`
}

type measurement struct {
	label      string
	wall       time.Duration
	steps      []step
	maxRSS     int64 // KiB: ru_maxrss from wait4, the largest process in stent's tree
	stderrTail string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchbuild", flag.ContinueOnError)
	kernel := fs.String("kernel", "6.1.0-56-amd64", "kernel release to build for")
	patch := fs.String("patch", "build/testdata/patches/cmdline.patch", "the one-file fix")
	other := fs.String("other", "build/testdata/patches/consoles.patch", "a fix to another file, built once the tree is prepared (its original object is not cached yet)")
	cached := fs.Int("cached", 3, "builds with everything cached")
	download := fs.Bool("download", true, "count the linux-source download in the fresh build")
	keep := fs.Bool("keep", false, "keep the fresh cache folder")
	if err := fs.Parse(args); err != nil {
		return err
	}
	repo, err := kpkg.RepoRoot()
	if err != nil {
		return err
	}
	seed, err := kpkg.CacheDir()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(seed, "bench-build-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(tmp)
	}
	cache := filepath.Join(tmp, "cache")
	if err := seedDebs(filepath.Join(seed, "debs"), filepath.Join(cache, "debs"), *download); err != nil {
		return err
	}
	bin := filepath.Join(tmp, "stent") // runs stent-tools, built beside it, for build
	gob := exec.CommandContext(ctx, "go", "build", "-o", tmp+"/", "./cmd/stent", "./cmd/stent-tools")
	gob.Dir, gob.Stderr = repo, stderr
	if err := gob.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	kf, err := bundle.GenerateKey(tmp, "bench", false)
	if err != nil {
		return err
	}
	patchPath := filepath.Join(repo, *patch)

	build := func(label, patchPath string) (measurement, error) {
		fmt.Fprintf(stderr, "benchbuild: %s build...\n", label)
		out := filepath.Join(tmp, "out.bundle")
		cmd := exec.CommandContext(ctx, bin, "build", "--kernel", *kernel, "--patch", patchPath,
			"--key", kf.Private, "-o", out, "--json")
		cmd.Env = append(os.Environ(), "STENT_CACHE="+cache)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		start := time.Now()
		err := cmd.Run()
		m := measurement{label: label, wall: time.Since(start), stderrTail: tail(se.String(), 20)}
		if err != nil {
			return m, fmt.Errorf("%s build: %w\n%s", label, err, m.stderrTail)
		}
		// wait4's ru_maxrss covers the child and the descendants it
		// waited for: the largest of stent, make, gcc, tar, xz.
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.maxRSS = ru.Maxrss
		}
		var r result
		if err := json.Unmarshal(so.Bytes(), &r); err != nil {
			return m, fmt.Errorf("%s build: read --json output: %w", label, err)
		}
		m.steps = r.Steps
		return m, nil
	}

	var ms []measurement
	m, err := build("fresh", patchPath)
	if err != nil {
		return err
	}
	ms = append(ms, m)
	m, err = build("prepared tree, another file", filepath.Join(repo, *other))
	if err != nil {
		return err
	}
	ms = append(ms, m)
	for i := 0; i < *cached; i++ {
		m, err := build(fmt.Sprintf("all cached #%d", i+1), patchPath)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	fmt.Fprintf(stdout, "stent build --kernel %s --patch %s (%s, load %s)\n\n", *kernel, *patch, time.Now().Format("2006-01-02"), loadavg.String())
	fmt.Fprintln(stdout, "| build | wall | kernel pkgs | source | prepare | compile | symbols | diff | link | peak RSS |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|")
	for _, m := range ms {
		get := func(n string) string {
			for _, s := range m.steps {
				if s.Name == n {
					return fmt.Sprintf("%.1f s", s.Duration.Seconds())
				}
			}
			return "-"
		}
		fmt.Fprintf(stdout, "| %s | %.1f s | %s | %s | %s | %s | %s | %s | %s | %d MiB |\n", m.label, m.wall.Seconds(),
			get("kernel"), get("source"), get("prepare"), get("compile"), get("symbols"), get("diff"), get("link"),
			m.maxRSS/1024)
	}
	return nil
}

// seedDebs links the .deb files of src into dst, leaving out the
// linux-source package when the download is to be measured.
func seedDebs(src, dst string, download bool) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".deb") || (download && strings.HasPrefix(e.Name(), "linux-source-")) {
			continue
		}
		if err := os.Link(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
