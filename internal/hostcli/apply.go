package hostcli

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/patcher"
)

func init() { AddCommand(newApplyCmd) }

func newApplyCmd(env *Env) *cobra.Command {
	var opts patcher.ApplyOptions
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "Apply a live patch to the running kernel",
		Long: `Apply a live patch to the running kernel.

FILE is a signed Stent bundle (see docs/bundle-format.md) or, with
--allow-unsigned, a bare livepatch kernel module (.ko). Before anything is
loaded, stent checks that the bundle's signature verifies against the trusted
keys (--keys-dir), that the module is a live patch (modinfo livepatch=Y) and
that it was built for the running kernel (release and build ID). It then
loads the module with finit_module(2) and waits for the kernel to switch
every task to the new code.

If the switch does not finish within --timeout, stent reverses it, unloads
the module and exits non-zero, naming the tasks that blocked it and their
kernel stacks: the kernel is left as it was. --force instead tells the
kernel to consider every task switched without the safety check; the
modules of patches it replaces can then never be removed.

A cumulative patch (replace) atomically replaces the patches applied before
it; their modules are unloaded afterwards. Only one stent operation runs at
a time on a host, and only one live patch transition at a time in a kernel.

Interrupting stent (Ctrl-C, SIGTERM) during the transition reverses it
the same way before stent exits.

Exit codes: 0 applied (or already applied), 1 error, 2 refused before
loading, 3 transition stalled and reverted (the kernel is as before),
4 transition stalled and could not be undone (stent status shows it),
130 interrupted (a transition in progress was reversed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Progress = progressPrinter(env.Stderr, quiet || asJSON)
			if opts.Force {
				fmt.Fprintln(env.Stderr, "warning: --force: if the transition stalls, it is forced without the safety check, and the modules of patches it replaces can never be removed")
			}
			res, err := env.Runtime().Apply(cmd.Context(), args[0], opts)
			if err != nil {
				var se *patcher.StallError
				if errors.As(err, &se) {
					printBlockers(env, se)
					if !se.Reverted {
						return WithCode(4, err)
					}
					return WithCode(3, err)
				}
				if errors.Is(err, patcher.ErrRefused) {
					return WithCode(2, err)
				}
				return err
			}
			if asJSON {
				return WriteJSON(env.Stdout, res)
			}
			switch {
			case res.AlreadyApplied:
				fmt.Fprintf(env.Stdout, "%s is already applied\n", res.Name)
			default:
				fmt.Fprintf(env.Stdout, "applied %s in %s\n", res.Name, fmtDur(res.Duration))
			}
			for _, r := range res.Replaced {
				if slices.Contains(res.Pinned, r) {
					fmt.Fprintf(env.Stdout, "replaced %s (its module stays loaded: the kernel pins it)\n", r)
				} else {
					fmt.Fprintf(env.Stdout, "replaced %s (module unloaded)\n", r)
				}
			}
			if res.Forced {
				fmt.Fprintf(env.Stdout, "warning: %s was forced: the tasks that blocked it were switched without the safety check\n", res.Name)
			}
			if res.Persisted {
				fmt.Fprintf(env.Stdout, "stored for reboots in %s\n", env.StateDir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.AllowUnsigned, "allow-unsigned", false, "accept a bare .ko that is not a signed bundle")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "how long to wait for the transition before reverting it")
	f.BoolVar(&opts.Force, "force", false, "on a stalled transition, force it instead of reverting (unsafe; replaced patches' modules can then never be removed)")
	f.BoolVar(&opts.Persist, "persist", false, "store the patch so that it is applied again at boot (stent load-persisted)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.BoolVarP(&quiet, "quiet", "q", false, "print no progress")
	return cmd
}

// printBlockers names the tasks that kept a transition from finishing.
func printBlockers(env *Env, se *patcher.StallError) {
	fmt.Fprintf(env.Stderr, "tasks still running the old code of %s:\n", se.Name)
	for _, t := range se.Blockers {
		fmt.Fprintf(env.Stderr, "  pid %d (tid %d) %s\n", t.PID, t.TID, t.Comm)
		for _, fr := range t.Stack {
			fmt.Fprintf(env.Stderr, "      %s\n", fr)
		}
	}
}
