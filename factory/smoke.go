package factory

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
)

// SmokeOptions configure Smoke.
type SmokeOptions struct {
	// PublicKey is the .pub file of the key that signed the bundle; the
	// guest trusts it (/etc/stent/keys).
	PublicKey []byte
	// Check is a shell script run in the guest with the patch applied,
	// exercising the patched code; "" runs none.
	Check string
	// LogDir holds each kernel's guest files, LogDir/<release>/console.log
	// (smoke tests of two kernels run at once); default a temporary folder.
	LogDir string
	// BootTimeout bounds the boot under QEMU; default 5 minutes (a TCG
	// boot takes 3-50 s, more on a busy build machine).
	BootTimeout time.Duration
	Progress    io.Writer
}

// oopsRE matches what a kernel logs when something went wrong.
var oopsRE = regexp.MustCompile(`(?m)(Oops|BUG:|WARNING:|general protection fault|Kernel panic|Call Trace:)`)

// Smoke tests a signed bundle on its exact kernel under QEMU (the test
// harness of internal/vmtest, so it runs from a Stent checkout with Go,
// qemu-system-x86_64 and busybox-static): it boots the kernel, loads the
// modules the bundle patches, applies it with stent apply and checks that
// its livepatch is enabled, runs opts.Check, reverts it, and fails when
// the kernel log shows an oops, a BUG or a WARNING at any point.
func Smoke(ctx context.Context, release string, data []byte, opts SmokeOptions) error {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	b, err := bundle.Parse(data)
	if err != nil {
		return fmt.Errorf("smoke: %w", err)
	}
	m := b.Manifest()
	if m.Kernel.Release != release {
		return fmt.Errorf("smoke: the bundle is for %s, not %s", m.Kernel.Release, release)
	}
	k, err := kpkg.Fetch(ctx, release, opts.Progress)
	if err != nil {
		return err
	}
	var mods []string
	seen := map[string]bool{}
	for _, f := range m.Functions {
		if f.Object != "vmlinux" && !seen[f.Object] {
			seen[f.Object] = true
			mods = append(mods, f.Object)
		}
	}
	if opts.LogDir == "" {
		if opts.LogDir, err = os.MkdirTemp("", "stent-smoke-"); err != nil {
			return err
		}
	}
	opts.LogDir = filepath.Join(opts.LogDir, release)
	start := time.Now()
	if opts.BootTimeout == 0 {
		opts.BootTimeout = 5 * time.Minute
	}
	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: k, Modules: mods, LogDir: opts.LogDir, BootTimeout: opts.BootTimeout, Files: []vmtest.File{
		{Path: "/etc/stent/keys/factory.pub", Data: opts.PublicKey},
		{Path: "/root/patch.bundle", Data: data},
	}})
	if err != nil {
		return fmt.Errorf("smoke: boot %s: %w", release, err)
	}
	defer vm.Close()
	fmt.Fprintf(opts.Progress, "smoke: %s booted in %.1fs\n", release, time.Since(start).Seconds())
	sh := func(what, script string) error {
		res, err := vm.Sh(ctx, script)
		if err != nil {
			out := strings.TrimSpace(res.Stdout + res.Stderr)
			if d, derr := vm.Sh(ctx, "dmesg | tail -n 8"); derr == nil {
				out += "; kernel log: " + strings.Join(strings.Fields(d.Stdout), " ")
			}
			return fmt.Errorf("smoke on %s: %s: %w: %s", release, what, err, out)
		}
		if c := vm.Console(); oopsRE.MatchString(c) {
			return fmt.Errorf("smoke on %s: the kernel log shows %q after %s (console log: %s)", release, oopsRE.FindString(c), what, vm.ConsolePath())
		}
		return nil
	}
	for _, mod := range mods {
		if err := sh("modprobe "+mod, "modprobe "+mod); err != nil {
			return err
		}
	}
	if err := sh("stent apply", "stent apply /root/patch.bundle && test \"$(cat /sys/kernel/livepatch/"+m.Name+"/enabled)\" = 1"); err != nil {
		return err
	}
	if opts.Check != "" {
		if err := sh("the functional check", opts.Check); err != nil {
			return err
		}
	}
	if err := sh("stent revert", "stent revert "+m.Name); err != nil {
		return err
	}
	fmt.Fprintf(opts.Progress, "smoke: %s passed in %.1fs\n", release, time.Since(start).Seconds())
	return nil
}
