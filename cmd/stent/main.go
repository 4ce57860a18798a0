// Command stent applies, reverts and reports kernel live patches on a host.
// It links only the live patch runtime, so that it starts fast; the agent,
// builder, planner and fleet client are in stent-tools, which stent runs
// for those subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/stent-dev/stent/internal/hostcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := hostcli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if code != 0 {
		os.Exit(code)
	}
}
