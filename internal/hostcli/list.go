package hostcli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { AddCommand(newListCmd) }

func newListCmd(env *Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List loaded live patches",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := env.Runtime().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return WriteJSON(env.Stdout, st.Patches)
			}
			if len(st.Patches) == 0 {
				fmt.Fprintln(env.Stdout, "no live patches loaded")
				return nil
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tENABLED\tTRANSITION\tLEVEL\tCVES\tAPPLIED")
			for _, p := range st.Patches {
				level, cves, applied := "-", "-", "-"
				if r := p.Record; r != nil {
					if r.Manifest != nil {
						level = fmt.Sprint(r.Manifest.Level)
						if n := len(r.Manifest.CVEs); n > 0 {
							cves = fmt.Sprint(n)
						}
					}
					applied = r.AppliedAt.Format("2006-01-02 15:04:05Z")
				}
				fmt.Fprintf(w, "%s\t%v\t%v\t%s\t%s\t%s\n", p.Name, p.Enabled, p.Transition, level, cves, applied)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}
