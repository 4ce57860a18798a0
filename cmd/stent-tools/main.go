// Command stent-tools holds the stent subcommands that the host binary
// hands over to it (agent, build, inventory, plan, report, publish, fleet),
// and all the others too. People run it as stent: `stent build ...` finds
// stent-tools beside stent or in /usr/lib/stent and runs it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/stent-dev/stent/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if code != 0 {
		os.Exit(code)
	}
}
