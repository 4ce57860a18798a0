// Command demo is what `make demo` runs: it boots a real Debian kernel
// under QEMU and live patches it with stent, step by step, narrating what
// happens so a person watching can follow.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
)

const abi = "6.1.0-56-amd64"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	ctx context.Context
	out io.Writer
	vm  *vmtest.VM
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n\033[1m==> %s\033[0m\n", fmt.Sprintf(format, args...))
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "    %s\n", fmt.Sprintf(format, args...))
}

// guest runs a command in the guest and shows it as a shell session would.
func (d *demo) guest(argv ...string) (string, error) {
	fmt.Fprintf(d.out, "\033[36mguest# %s\033[0m\n", strings.Join(argv, " "))
	r, err := d.vm.Exec(d.ctx, vmtest.Cmd{Argv: argv, Timeout: 2 * time.Minute})
	var ee *vmtest.ExitError
	if err != nil && !errors.As(err, &ee) {
		return "", err
	}
	fmt.Fprint(d.out, indent(r.Stderr)) // progress comes before the result
	fmt.Fprint(d.out, indent(r.Stdout))
	if r.Exit != 0 {
		return r.Stdout, fmt.Errorf("guest %s: exit %d", strings.Join(argv, " "), r.Exit)
	}
	return r.Stdout, nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

func run(ctx context.Context, out io.Writer) error {
	d := &demo{ctx: ctx, out: out}
	start := time.Now()

	d.step("Fetching Debian's kernel %s (image, headers, kbuild) into the cache", abi)
	k, err := kpkg.Fetch(ctx, abi, out)
	if err != nil {
		return err
	}
	d.say("kernel %s, Debian package %s", k.Release, k.PackageVersion)

	d.step("Building two live patch modules against its headers")
	d.say("stent_lp_cmdline_v1 replaces cmdline_proc_show(), the function behind /proc/cmdline")
	d.say("stent_lp_cmdline_v2 is its cumulative successor (replace = true)")
	v1ko, err := readModule(ctx, k, "stent_lp_cmdline_v1")
	if err != nil {
		return err
	}
	v2ko, err := readModule(ctx, k, "stent_lp_cmdline_v2")
	if err != nil {
		return err
	}

	d.step("Signing them into Stent bundles with a new ed25519 key")
	keyDir, err := os.MkdirTemp("", "stent-demo-key")
	if err != nil {
		return err
	}
	defer os.RemoveAll(keyDir)
	kf, err := bundle.GenerateKey(keyDir, "demo", false)
	if err != nil {
		return err
	}
	key, err := bundle.LoadPrivateKey(kf.Private)
	if err != nil {
		return err
	}
	pub, err := os.ReadFile(kf.Public)
	if err != nil {
		return err
	}
	d.say("signing key %s; its public half goes to the guest's /etc/stent/keys", kf.ID)
	v1, err := makeBundle(k, "stent_lp_cmdline_v1", 1, v1ko, key, "CVE-2026-1001")
	if err != nil {
		return err
	}
	v2, err := makeBundle(k, "stent_lp_cmdline_v2", 2, v2ko, key, "CVE-2026-1001", "CVE-2026-1002")
	if err != nil {
		return err
	}

	d.step("Booting %s under QEMU (software emulation; a few seconds)", abi)
	logDir, err := os.MkdirTemp("", "stent-demo-vm")
	if err != nil {
		return err
	}
	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: k, LogDir: logDir, Files: []vmtest.File{
		{Path: "/etc/stent/keys/demo.pub", Data: pub},
		{Path: "/root/fix-v1.bundle", Data: v1},
		{Path: "/root/fix-v2.bundle", Data: v2},
	}})
	if err != nil {
		return err
	}
	defer vm.Close()
	d.vm = vm
	d.say("console log: %s", filepath.Join(logDir, "console.log"))

	d.step("Before: the kernel's own /proc/cmdline and stent status")
	if _, err := d.guest("cat", "/proc/cmdline"); err != nil {
		return err
	}
	if _, err := d.guest("stent", "status"); err != nil {
		return err
	}

	d.step("Applying the signed live patch v1: no reboot")
	if _, err := d.guest("stent", "apply", "/root/fix-v1.bundle"); err != nil {
		return err
	}
	d.step("After: the same file now comes from the patched function")
	if _, err := d.guest("cat", "/proc/cmdline"); err != nil {
		return err
	}
	if _, err := d.guest("stent", "status"); err != nil {
		return err
	}
	d.say("scanners that ask stent uname see the patched package version:")
	if _, err := d.guest("uname", "-v"); err != nil {
		return err
	}
	if _, err := d.guest("stent", "uname", "-v"); err != nil {
		return err
	}

	d.step("Applying the cumulative v2: it atomically replaces v1, whose module is unloaded")
	if _, err := d.guest("stent", "apply", "/root/fix-v2.bundle"); err != nil {
		return err
	}
	if _, err := d.guest("cat", "/proc/cmdline"); err != nil {
		return err
	}
	if _, err := d.guest("stent", "list"); err != nil {
		return err
	}

	d.step("Reverting v2: the kernel returns to its original code")
	if _, err := d.guest("stent", "revert", "stent_lp_cmdline_v2"); err != nil {
		return err
	}
	if _, err := d.guest("cat", "/proc/cmdline"); err != nil {
		return err
	}
	if _, err := d.guest("stent", "list"); err != nil {
		return err
	}

	d.step("Done in %s: applied, replaced and reverted live patches on a running %s kernel", time.Since(start).Round(time.Second), abi)
	return nil
}

func readModule(ctx context.Context, k *kpkg.Kernel, name string) ([]byte, error) {
	p, err := vmtest.BuildModule(ctx, k, name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

func makeBundle(k *kpkg.Kernel, name string, level int64, ko []byte, key ed25519.PrivateKey, cves ...string) ([]byte, error) {
	m := &bundle.Manifest{
		FormatVersion: bundle.FormatVersion, Name: name, Level: level, Replace: true,
		Kernel:      bundle.Kernel{Release: k.Release, PackageVersion: k.PackageVersion},
		CVEs:        cves,
		Functions:   []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Description: fmt.Sprintf("demo fix level %d: /proc/cmdline says it is patched", level),
		Effective:   &bundle.Effective{PackageVersion: fmt.Sprintf("%s+stent%d", k.PackageVersion, level)},
		Created:     time.Now().UTC().Truncate(time.Second),
	}
	var b bytes.Buffer
	if err := bundle.Create(&b, m, ko, key); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
