// Command stent applies, reverts and reports kernel live patches on a host,
// and hosts Stent's other host-side tools (builder, planner, agent).
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
