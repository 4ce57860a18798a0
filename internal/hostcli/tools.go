package hostcli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/internal/version"
)

// ToolCommand names a subcommand that lives in the stent-tools binary.
type ToolCommand struct {
	Name  string
	Short string
}

// ToolCommands are the subcommands that the host binary hands over to
// stent-tools. They link the HTTP client and Prometheus (agent), the
// builder, the planner and the SQLite reader of RPM databases: half of
// what a host binary holding them would spend starting up, which every
// `stent apply` would pay. The internal/cli package implements them; its
// tests check this list against it.
var ToolCommands = []ToolCommand{
	{"agent", "Run the fleet agent: enroll with stent-server, then keep this host's live patches as the server wants"},
	{"build", "Build a signed live patch bundle from a source fix"},
	{"factory", "Turn kernel security uploads into tested, signed live patches for the kernels the fleet runs"},
	{"fleet", "Operate a fleet through stent-server: status, hosts, rollouts, kernels and reboots, live plan and report, tokens, audit log"},
	{"inventory", "Describe this host for patch planning"},
	{"kernel", "Install, list and clean up this host's kernel packages through its package manager"},
	{"plan", "Decide per host and per CVE: live patch now, emergency reboot, or reboot in the window"},
	{"publish", "Publish a signed bundle to stent-server and roll it out in waves"},
	{"report", "Compliance report per host and fleet-wide: compliant, at risk, breached, excepted"},
}

// toolsEnv names the environment variable that overrides where stent-tools is.
const toolsEnv = "STENT_TOOLS"

// forwardedEnv is set, to the path run, in the environment of the
// stent-tools that stent replaces itself with. A binary that receives it
// and would hand the command over again is not stent-tools (STENT_TOOLS or
// a stent-tools file naming stent itself, say): it says so instead of
// running itself forever. Run removes it from the environment, so that
// what stent-tools starts does not inherit it.
const forwardedEnv = "STENT_TOOLS_FORWARDED"

// hostVersionEnv carries the host binary's version to the stent-tools it
// runs, which warns when its own differs: the two are one program split in
// two and are meant to be installed together.
const hostVersionEnv = "STENT_HOST_VERSION"

// toolsStub is the host binary's stand-in for a stent-tools subcommand:
// it shows in `stent --help` and replaces this process with stent-tools
// run on the same arguments, so flags, exit codes and signals are the
// tool's own. args are the whole command line (global flags, `help`,
// cobra's `__complete` included); forwardedFrom is forwardedEnv as this
// process received it.
func toolsStub(tc ToolCommand, args []string, forwardedFrom string) *cobra.Command {
	run := func(ctx context.Context, args []string) error {
		if forwardedFrom != "" {
			return fmt.Errorf("stent %s: %s is not stent-tools: it hands %s over to stent-tools itself; install stent-tools beside stent or in /usr/lib/stent, or set %s to its path",
				tc.Name, forwardedFrom, tc.Name, toolsEnv)
		}
		path, err := findTools()
		if err != nil {
			return fmt.Errorf("stent %s: %w", tc.Name, err)
		}
		argv := append([]string{"stent"}, args...)
		env := append(os.Environ(), forwardedEnv+"="+path, hostVersionEnv+"="+version.String())
		// From here on a SIGINT or SIGTERM kills this process, as it would
		// stent-tools, instead of being taken by Main's handler and lost
		// in the exec; one that came before is honoured.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		if ctx != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := syscall.Exec(path, argv, env); err != nil {
			return fmt.Errorf("stent %s: run %s: %w", tc.Name, path, err)
		}
		return nil // not reached
	}
	cmd := &cobra.Command{
		Use:                tc.Name,
		Short:              tc.Short,
		DisableFlagParsing: true,
		RunE:               func(c *cobra.Command, _ []string) error { return run(c.Context(), args) },
		// `stent completion` scripts ask `stent __complete ARGS...`:
		// stent-tools knows the subcommands and flags, so it answers.
		ValidArgsFunction: func(c *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if err := run(c.Context(), args); err != nil {
				cobra.CompDebugln(err.Error(), true)
			}
			return nil, cobra.ShellCompDirectiveDefault
		},
	}
	// `stent help build [sub...]` shows the tool's own help: stent-tools
	// runs the same `help` command line.
	cmd.SetHelpFunc(func(c *cobra.Command, _ []string) {
		a := args
		if !slices.Contains(a, "help") {
			a = []string{tc.Name, "--help"}
		}
		if err := run(c.Context(), a); err != nil {
			// Help functions return nothing: exit here so that a help
			// that could not be shown is not a success.
			fmt.Fprintf(c.ErrOrStderr(), "stent: %v\n", err)
			os.Exit(1)
		}
	})
	return cmd
}

// toolsCandidates lists where stent-tools is looked for: beside the
// running binary (an unpacked release, bin/ of a source build), in
// ../lib/stent from it (a package's /usr/bin and /usr/lib/stent), then in
// /usr/lib/stent.
func toolsCandidates() []string {
	var c []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		c = append(c, filepath.Join(dir, "stent-tools"), filepath.Join(dir, "..", "lib", "stent", "stent-tools"))
	}
	c = append(c, "/usr/lib/stent/stent-tools")
	return c
}

// findTools returns the stent-tools binary to run: $STENT_TOOLS when set,
// otherwise the first candidate that is an executable file.
func findTools() (string, error) {
	if p := os.Getenv(toolsEnv); p != "" {
		if err := isExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", toolsEnv, p, err)
		}
		return p, nil
	}
	cands := toolsCandidates()
	for _, p := range cands {
		if isExecutable(p) == nil {
			return filepath.Clean(p), nil
		}
	}
	return "", fmt.Errorf("this command is in the stent-tools binary, which is not installed here (looked for %s); install it beside stent or in /usr/lib/stent, or set %s to its path",
		strings.Join(cands, ", "), toolsEnv)
}

func isExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}
