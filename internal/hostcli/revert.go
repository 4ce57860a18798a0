package hostcli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/patcher"
)

func init() { AddCommand(newRevertCmd) }

func newRevertCmd(env *Env) *cobra.Command {
	var opts patcher.RevertOptions
	var quiet bool
	cmd := &cobra.Command{
		Use:   "revert NAME",
		Short: "Revert a live patch and unload its module",
		Long: `Revert a live patch: disable it, wait for the kernel to move every task
back to the original code, unload the module and remove its stored copy
(unless --keep-persisted). A patch still in its first transition has that
transition reversed. NAME is the patch name that stent list shows.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Progress = progressPrinter(env.Stderr, quiet)
			if err := env.Runtime().Revert(cmd.Context(), args[0], opts); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "reverted %s\n", args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "how long to wait for the reverse transition")
	f.BoolVar(&opts.KeepPersisted, "keep-persisted", false, "keep the stored copy, so the next boot applies the patch again")
	f.BoolVarP(&quiet, "quiet", "q", false, "print no progress")
	return cmd
}
