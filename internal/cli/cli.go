// Package cli is the full stent command line, linked into stent-tools: the
// host binary's commands (package hostcli) plus the agent, the builder, the
// planner and the fleet client, one file per subcommand. The host binary
// hands these subcommands over to stent-tools (hostcli.ToolCommands).
package cli

import (
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

// The host command line's helpers, under the names this package's
// subcommands use.
var (
	writeJSON         = hostcli.WriteJSON
	withCode          = hostcli.WithCode
	defaultSigningDir = hostcli.DefaultSigningDir
)
