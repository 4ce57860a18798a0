// Package hostcli implements the stent command line of the host binary:
// the root command, the global flags and the live patch runtime's
// subcommands (status, apply, revert, list, uname, key, bundle, ...), one
// file per subcommand. The other subcommands (agent, build, plan, ...) are
// in package internal/cli, linked into stent-tools; the host binary hands
// them over to it (tools.go).
package hostcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/internal/version"
)

// Env carries what every subcommand needs: where the host's files live (so
// tests can point the CLI at a fake tree), the output streams and a logger.
// Root is the filesystem root: the host's own paths (/proc, /sys, /etc,
// /boot, the package database) are read and written under it. StateDir,
// RunDir and KeysDir are used as given, not under Root.
type Env struct {
	Root     string // filesystem root, "/" on a real host
	StateDir string // persistent state, /var/lib/stent
	RunDir   string // per-boot state, /run/stent
	KeysDir  string // trusted public keys, /etc/stent/keys
	Stdout   io.Writer
	Stderr   io.Writer
	Log      *slog.Logger
}

// commandFactories is filled by the init functions of the subcommand files,
// so each subcommand lives in a file of its own.
var commandFactories []func(*Env) *cobra.Command

func AddCommand(f func(*Env) *cobra.Command) { commandFactories = append(commandFactories, f) }

// exitError carries a specific exit code out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// WithCode makes a subcommand exit with code instead of 1.
func WithCode(code int, err error) error { return &exitError{code: code, err: err} }

// newRoot builds the command tree for args: the registered subcommands,
// and stand-ins for the stent-tools subcommands that are not linked in.
func newRoot(env *Env, args []string, forwardedFrom string) *cobra.Command {
	root := &cobra.Command{
		Use:   "stent",
		Short: "Live patch Linux kernels: apply, revert, report, build and plan",
		Long: `stent applies signed live patches to the running Linux kernel, reverts them,
reports what the kernel runs, keeps patches across reboots, builds live patches
from source fixes and plans a fleet's patching.`,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&env.Root, "root", envOr("STENT_ROOT", "/"), "filesystem root the host's own paths (/proc, /sys, /etc, /boot, package databases) are read under, for tests; --state-dir, --run-dir and --keys-dir are not under it (env STENT_ROOT)")
	pf.StringVar(&env.StateDir, "state-dir", envOr("STENT_STATE_DIR", "/var/lib/stent"), "persistent state folder (env STENT_STATE_DIR)")
	pf.StringVar(&env.RunDir, "run-dir", envOr("STENT_RUN_DIR", "/run/stent"), "per-boot state folder (env STENT_RUN_DIR)")
	pf.StringVar(&env.KeysDir, "keys-dir", envOr("STENT_KEYS_DIR", "/etc/stent/keys"), "folder of trusted public keys (*.pub) (env STENT_KEYS_DIR)")
	_ = pf.MarkHidden("root")
	facs := append([]func(*Env) *cobra.Command(nil), commandFactories...)
	cmds := make([]*cobra.Command, 0, len(facs))
	for _, f := range facs {
		cmds = append(cmds, f(env))
	}
	have := map[string]bool{}
	for _, c := range cmds {
		have[c.Name()] = true
	}
	for _, tc := range ToolCommands {
		if !have[tc.Name] {
			cmds = append(cmds, toolsStub(tc, args, forwardedFrom))
		}
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	root.AddCommand(cmds...)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Run runs the stent command line with args and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &Env{
		Stdout: stdout,
		Stderr: stderr,
		Log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	forwardedFrom := os.Getenv(forwardedEnv)
	os.Unsetenv(forwardedEnv)
	if host := os.Getenv(hostVersionEnv); host != "" {
		os.Unsetenv(hostVersionEnv)
		if own := version.String(); host != own {
			fmt.Fprintf(stderr, "stent: warning: stent is version %s but stent-tools (%s) is version %s: install both from the same build\n", host, forwardedFrom, own)
		}
	}
	root := newRoot(env, args, forwardedFrom)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, interrupted(err))
		return 130
	}
	fmt.Fprintf(stderr, "stent: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// interrupted is the message for a command stopped by a signal, keeping
// what was done about it ("reverted and unloaded", say).
func interrupted(err error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+context.Canceled.Error())
	if msg == context.Canceled.Error() {
		return "stent: interrupted"
	}
	return "stent: interrupted: " + msg
}

// WriteJSON prints v as indented JSON, the form every --json flag uses.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Main runs the stent command line on the process's arguments and exits
// with its code: the whole of a stent binary's main.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
