package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetStatusCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show hosts by state, kernel and patch, and every rollout's progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := admin(sf, func(c *api.Client) (*api.FleetStatus, error) { return c.Fleet(cmd.Context()) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, st)
			}
			printFleet(env.Stdout, st)
			return nil
		},
	}
	jsonFlag(c, &asJSON)
	return c
}

func printFleet(out io.Writer, st *api.FleetStatus) {
	fmt.Fprintf(out, "Hosts: %d (%d online, %d offline), %d healthy, %d degraded, %d revoked\n",
		st.Hosts, st.Online, st.Offline, st.Healthy, st.Degraded, st.Revoked)
	printCounts(out, "Kernels", st.ByKernel)
	printCounts(out, "Channels", st.ByChannel)
	printCounts(out, "Patches enabled", st.ByPatch)
	if len(st.Rollouts) == 0 {
		fmt.Fprintln(out, "Rollouts: none")
		return
	}
	fmt.Fprintln(out, "Rollouts:")
	printRollouts(out, st.Rollouts)
}

func printCounts(out io.Writer, title string, m map[string]int) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	fmt.Fprintf(out, "%s: %s\n", title, strings.Join(parts, ", "))
}
