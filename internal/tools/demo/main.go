// Command demo is what `make demo` runs: it boots a real Debian kernel
// under QEMU and live patches it with stent, step by step, narrating what
// happens so a person watching can follow.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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
	bin string // folder with the stent and stent-server binaries for the host
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n\033[1m==> %s\033[0m\n", fmt.Sprintf(format, args...))
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "    %s\n", fmt.Sprintf(format, args...))
}

// guest runs a command in the guest and shows it as a shell session would.
func (d *demo) guest(argv ...string) (string, error) {
	fmt.Fprintf(d.out, "\033[36mguest# %s\033[0m\n", shellJoin(argv))
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

// host runs a stent command on the host and shows it.
func (d *demo) host(env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(d.ctx, filepath.Join(d.bin, argv[0]), argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	return showRun(d.out, cmd, argv)
}

// showRun runs cmd on the host as argv shows it, printing the command, its
// stderr (progress) and then its stdout, and returns the stdout.
func showRun(out io.Writer, cmd *exec.Cmd, argv []string) (string, error) {
	fmt.Fprintf(out, "\033[33mhost$ %s\033[0m\n", shellJoin(argv))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	fmt.Fprint(out, indent(stderr.String()))
	fmt.Fprint(out, indent(stdout.String()))
	if err != nil {
		return stdout.String(), fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return stdout.String(), nil
}

// shellJoin shows argv as one would type it: words with spaces or shell
// characters in single quotes.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$;&|<>()*?`\\{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
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
	pubKey, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pub, err := bundle.EncodePublicKey(pubKey)
	if err != nil {
		return err
	}
	d.say("signing key %s; its public half goes to the guest's /etc/stent/keys and the server's --keys-dir", bundle.KeyIDOf(pubKey))
	v1, err := makeBundle(k, "stent_lp_cmdline_v1", 1, v1ko, key, "CVE-2026-1001")
	if err != nil {
		return err
	}
	v2, err := makeBundle(k, "stent_lp_cmdline_v2", 2, v2ko, key, "CVE-2026-1001", "CVE-2026-1002")
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "stent-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	d.bin = filepath.Join(work, "bin")
	v1Path := filepath.Join(work, "fix-v1.bundle")
	if err := os.WriteFile(v1Path, v1, 0o644); err != nil {
		return err
	}

	d.step("Starting the control server, stent-server, on the host's loopback")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", d.bin+"/", "./cmd/stent", "./cmd/stent-tools", "./cmd/stent-server").CombinedOutput(); err != nil {
		return fmt.Errorf("build stent binaries: %v\n%s", err, out)
	}
	// The server publishes only bundles of the keys in its --keys-dir.
	keysDir := filepath.Join(work, "keys")
	if err := os.Mkdir(keysDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(keysDir, "demo.pub"), pub, 0o644); err != nil {
		return err
	}
	srv, err := startServer(ctx, d, filepath.Join(work, "server"), keysDir)
	if err != nil {
		return err
	}
	defer srv.stop()
	d.say("listening on %s; state in SQLite under %s; certificate fingerprint %s", srv.addr, srv.dataDir, srv.fingerprint)

	d.step("Booting %s under QEMU (software emulation; a few seconds)", abi)
	d.say("the guest reaches the server only through QEMU's user network, forwarded to the host's loopback")
	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: k, StentTools: true, LogDir: filepath.Join(work, "vm"), Files: []vmtest.File{
		{Path: "/etc/stent/keys/demo.pub", Data: pub},
		{Path: "/root/fix-v1.bundle", Data: v1},
		{Path: "/root/fix-v2.bundle", Data: v2},
	}, Forwards: []vmtest.Forward{{GuestPort: 8443, Host: srv.addr}}})
	if err != nil {
		return err
	}
	defer vm.Close()
	d.vm = vm
	d.say("console log: %s", vm.ConsolePath())

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

	if err := d.fleet(srv, v1Path); err != nil {
		return err
	}
	d.say("live patch part: %s", time.Since(start).Round(time.Second))
	// The bare kernel's VM is done; the kernel updates part boots a whole
	// Debian system and needs the CPU.
	vm.Close()

	if err := d.kernelUpdates(srv, work, livePatchKit{kernel: k, module: v1ko, key: key, pubFile: pub}); err != nil {
		return err
	}

	d.step("Done in %s: live patches applied, replaced and reverted on a running %s kernel, by hand and through the fleet server; "+
		"then a Debian host exposed to a CVE live patched at once, its fixed kernel installed through apt and booted in the window", time.Since(start).Round(time.Second), abi)
	return nil
}

// fleet enrolls the guest's agent with the server, publishes a patch and
// watches the agent apply it live, then reverts it fleet-wide.
func (d *demo) fleet(srv *server, bundlePath string) error {
	env := srv.env()
	d.step("Fleet: the operator creates an enrollment token; the guest's agent enrolls with it")
	out, err := d.host(env, "stent", "fleet", "enroll-token", "--name", "demo", "--label", "role=demo", "--json")
	if err != nil {
		return err
	}
	var tok struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
		return fmt.Errorf("enroll-token printed no secret: %v", err)
	}
	url := fmt.Sprintf("https://%s:8443", vmtest.GuestHost)
	if _, err := d.guest("stent", "agent", "--server", url, "--enroll", tok.Secret, "--fingerprint", srv.fingerprint, "--enroll-only"); err != nil {
		return err
	}
	d.say("the agent now runs in the guest and holds a long-poll open to the server")
	if _, err := d.vm.Exec(d.ctx, vmtest.Cmd{Argv: []string{"sh", "-c", "setsid sh -c 'stent agent --health-delay 1s >/tmp/agent.log 2>&1' </dev/null >/dev/null 2>&1 &"}}); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c := exec.CommandContext(d.ctx, filepath.Join(d.bin, "stent"), "fleet", "status", "--json")
		c.Env = append(os.Environ(), env...)
		b, _ := c.Output()
		var st struct {
			Online int `json:"online"`
		}
		if json.Unmarshal(b, &st) == nil && st.Online > 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the guest's agent did not check in within 2 minutes")
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := d.host(env, "stent", "fleet", "status"); err != nil {
		return err
	}

	d.step("Fleet: the operator publishes the signed v1 bundle; the server pushes it, the agent verifies and applies it")
	t0 := time.Now()
	if _, err := d.host(env, "stent", "publish", "--wait", "--timeout", "3m", bundlePath); err != nil {
		return err
	}
	d.say("published to applied and healthy in %s", time.Since(t0).Round(100*time.Millisecond))
	if _, err := d.guest("cat", "/proc/cmdline"); err != nil {
		return err
	}
	if _, err := d.host(env, "stent", "fleet", "status"); err != nil {
		return err
	}

	d.step("Fleet: a fleet-wide revert; the agent reverts the patch live")
	if _, err := d.host(env, "stent", "fleet", "revert", "--patch", "stent_lp_cmdline_v1", "--reason", "demo"); err != nil {
		return err
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		r, err := d.vm.Exec(d.ctx, vmtest.Cmd{Argv: []string{"cat", "/proc/cmdline"}})
		if err != nil {
			return err
		}
		if !strings.Contains(r.Stdout, "stent-v1 patched") {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the agent did not revert the patch within 2 minutes")
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := d.guest("cat", "/proc/cmdline"); err != nil {
		return err
	}
	_, err = d.host(env, "stent", "fleet", "audit")
	return err
}

// server is a stent-server process on the host's loopback.
type server struct {
	cmd         *exec.Cmd
	addr        string
	dataDir     string
	fingerprint string
	done        chan struct{}
}

func startServer(ctx context.Context, d *demo, dataDir, keysDir string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{addr: addr, dataDir: dataDir, done: make(chan struct{})}
	logf, err := os.Create(dataDir + ".log")
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(filepath.Join(d.bin, "stent-server"), "--data-dir", dataDir, "--listen", addr, "--checkin-interval", "10s", "--log-level", "warn", "--keys-dir", keysDir)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			if _, err := os.Stat(filepath.Join(dataDir, "admin.token")); err == nil {
				break
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("stent-server exited; see %s.log", dataDir)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("stent-server did not come up on %s; see %s.log", addr, dataDir)
		}
	}
	fp, err := exec.CommandContext(ctx, filepath.Join(d.bin, "stent-server"), "fingerprint", "--data-dir", dataDir).Output()
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("stent-server fingerprint: %w", err)
	}
	s.fingerprint = strings.TrimSpace(string(fp))
	return s, nil
}

// env is what the operator's stent commands need to reach the server.
func (s *server) env() []string {
	return []string{"STENT_SERVER=https://" + s.addr, "STENT_TOKEN_FILE=" + filepath.Join(s.dataDir, "admin.token"), "STENT_SERVER_FINGERPRINT=" + s.fingerprint}
}

func (s *server) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
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
