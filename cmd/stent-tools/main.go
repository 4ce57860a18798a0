// Command stent-tools holds the stent subcommands that the host binary
// hands over to it (agent, build, inventory, plan, report, publish, fleet),
// and all the others too. People run it as stent: `stent build ...` finds
// stent-tools beside stent or in /usr/lib/stent and runs it.
package main

import (
	"github.com/stent-dev/stent/internal/hostcli"

	_ "github.com/stent-dev/stent/internal/cli" // the tool subcommands
)

func main() { hostcli.Main() }
