// Package cli is the full stent command line, linked into stent-tools: the
// host binary's commands (package hostcli) plus the agent, the builder, the
// planner and the fleet client, one file per subcommand. The host binary
// hands these subcommands over to stent-tools (hostcli.ToolCommands).
package cli

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/internal/hostcli"
)

// Env is what every subcommand gets: see hostcli.Env.
type Env = hostcli.Env

// toolFactories are the subcommands this package adds to hostcli's.
var toolFactories []func(*Env) *cobra.Command

func addCommand(f func(*Env) *cobra.Command) {
	toolFactories = append(toolFactories, f)
	hostcli.AddCommand(f)
}

func writeJSON(w io.Writer, v any) error { return hostcli.WriteJSON(w, v) }

func withCode(code int, err error) error { return hostcli.WithCode(code, err) }

// Run runs the full stent command line with args and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return hostcli.Run(ctx, args, stdout, stderr)
}

func defaultSigningDir() (string, error) { return hostcli.DefaultSigningDir() }
