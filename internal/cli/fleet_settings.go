package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetSettingsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "settings",
		Short: "Show or change server settings (the agents' check-in interval)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := admin(sf, func(c *api.Client) (*api.Settings, error) {
				if cmd.Flags().Changed("checkin-interval") {
					return c.PutSettings(cmd.Context(), api.Settings{CheckinInterval: api.Duration(interval)})
				}
				return c.Settings(cmd.Context())
			})
			if err != nil {
				return err
			}
			return writeJSON(env.Stdout, s)
		},
	}
	c.Flags().DurationVar(&interval, "checkin-interval", 0, "set the longest interval between agent check-ins")
	return c
}
