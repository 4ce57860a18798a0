package vmtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/testenv"
)

// Kernels the tests use: DefaultABI is the one booted; OtherABI is the
// previous ABI, for "a module built for another kernel".
const (
	DefaultABI = "6.1.0-56-amd64"
	OtherABI   = "6.1.0-55-amd64"
)

// hostTools are what booting a guest and building test modules need.
var hostTools = []string{"qemu-system-x86_64", "busybox", "mkfs.ext4", "make", "gcc-12", "dpkg-deb", "apt-get"}

// Require skips the test under -short, and when this machine lacks what
// QEMU tests need, with the reason. With CI=true in the environment a
// missing tool fails the test instead: CI must run these tests.
func Require(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("boots a kernel under QEMU; skipped under -short")
	}
	if missing := testenv.MissingTools(hostTools...); len(missing) > 0 {
		testenv.Unavailable(tb, "QEMU tests need %s (run make deps as root)", strings.Join(missing, ", "))
	}
}

// logWriter sends progress lines to the test log.
type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Kernel calls Require, then fetches the Debian kernel abi (see
// kpkg.Fetch), failing the test if it cannot.
func Kernel(tb testing.TB, abi string) *kpkg.Kernel {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := kpkg.Fetch(ctx, abi, logWriter{tb})
	if err != nil {
		tb.Fatalf("fetch kernel %s: %v", abi, err)
	}
	return k
}

// Module builds the test module name for k (see BuildModule), failing the
// test if it cannot.
func Module(tb testing.TB, k *kpkg.Kernel, name string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ko, err := BuildModule(ctx, k, name)
	if err != nil {
		tb.Fatal(err)
	}
	return ko
}

// Boot starts a VM for a test (see Start) and fails the test if it does not
// come up. The console log goes to the test's temporary folder, the VM is
// closed when the test ends, and when the test has failed the end of the
// console log is written to the test log.
func Boot(ctx context.Context, tb testing.TB, opts Options) *VM {
	tb.Helper()
	if opts.LogDir == "" {
		opts.LogDir = tb.TempDir()
	}
	start := time.Now()
	vm, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("boot VM: %v", err) // the error ends with the console's last lines
	}
	prep, boot := vm.Timings()
	tb.Logf("booted %s in %v (initramfs %v, boot %v)", opts.Kernel.Release, time.Since(start).Round(time.Millisecond),
		prep.Round(time.Millisecond), boot.Round(time.Millisecond))
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("console of the VM (%s), last 80 lines:\n%s", vm.ConsolePath(), vm.ConsoleTail(80))
		}
		vm.Close()
	})
	return vm
}
