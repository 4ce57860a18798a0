// Command stent applies, reverts and reports kernel live patches on a host.
// It links only the live patch runtime, so that it starts fast; the agent,
// builder, planner and fleet client are in stent-tools, which stent runs
// for those subcommands.
package main

import "github.com/stent-dev/stent/internal/hostcli"

func main() { hostcli.Main() }
