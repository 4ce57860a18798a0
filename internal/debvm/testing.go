package debvm

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/testenv"
)

// hostTools are what building the image and booting hosts need.
var hostTools = []string{"qemu-system-x86_64", "qemu-img", "mmdebstrap", "sfdisk", "partx", "mkfs.ext4", "apt-ftparchive", "apt-get", "busybox"}

// Require skips the test under -short, and when this machine cannot build
// or boot the Debian image (a missing tool, not root), with the reason.
// With CI=true a missing tool or root fails the test instead, as
// vmtest.Require does: CI must run these tests.
func Require(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("boots Debian 12 under QEMU; skipped under -short")
	}
	var missing []string
	for _, tool := range hostTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	var msg string
	switch {
	case len(missing) > 0:
		msg = "Debian VM tests need " + strings.Join(missing, ", ") + " (run make deps as root)"
	case os.Geteuid() != 0:
		msg = ErrNeedRoot.Error()
	default:
		return
	}
	testenv.Unavailable(tb, "%s", msg)
}

// TestImage calls Require, then returns the base image and the kernels
// (see FetchKernels and Image), building them on first use; it fails the
// test if it cannot.
func TestImage(tb testing.TB) (string, ImageInfo, Kernels) {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cache, err := kpkg.CacheDir()
	if err != nil {
		tb.Fatal(err)
	}
	ks, err := FetchKernels(ctx, cache)
	if err != nil {
		tb.Fatalf("kernels: %v", err)
	}
	path, info, err := Image(ctx, cache, ImageOptions{Kernel: ks.Old, Older: ks.Older, Progress: logWriter{tb}})
	if errors.Is(err, ErrNeedRoot) {
		testenv.Unavailable(tb, "%v", err)
	}
	if err != nil {
		tb.Fatalf("image: %v", err)
	}
	if !info.Cached {
		tb.Logf("built the Debian image %s in %v", path, info.BuildFor.Round(time.Second))
	}
	return path, info, ks
}

// TestRepo builds and serves a local apt repository of debs for the test's
// duration and returns its address for Config.Repo.
func TestRepo(tb testing.TB, debs []string) string {
	tb.Helper()
	ctx := context.Background()
	cache, err := kpkg.CacheDir()
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := Repo(ctx, cache, debs)
	if err != nil {
		tb.Fatal(err)
	}
	port, stop, err := ServeRepo(ctx, dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return "127.0.0.1:" + strconv.Itoa(port)
}

// TestBoot boots a host for a test (Dir defaults to a folder of the test's
// temporary folder) and stops it when the test ends; when the test failed
// the end of its console goes to the test log.
func TestBoot(ctx context.Context, tb testing.TB, cfg Config) *Host {
	tb.Helper()
	if cfg.Dir == "" {
		cfg.Dir = tb.TempDir()
	}
	start := time.Now()
	h, err := Boot(ctx, cfg)
	if err != nil {
		tb.Fatalf("boot %s: %v", cfg.Name, err)
	}
	tb.Logf("%s: booted in %v (console %s)", cfg.Name, time.Since(start).Round(time.Second), h.ConsolePath())
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("%s: console, last 60 lines:\n%s", cfg.Name, h.ConsoleTail(60))
		}
		h.Kill()
	})
	return h
}

type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
