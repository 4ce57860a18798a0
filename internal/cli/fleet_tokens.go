package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetEnrollTokenCmd(env *Env, sf *serverFlags) *cobra.Command {
	var req api.EnrollTokenRequest
	var labels []string
	var ttl time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "enroll-token",
		Short: "Create an enrollment token and print the agent command that uses it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if req.Labels, err = api.ParseLabels(labels); err != nil {
				return err
			}
			req.TTL = api.Duration(ttl)
			t, err := admin(sf, func(c *api.Client) (*api.Token, error) { return c.CreateEnrollToken(cmd.Context(), req) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, t)
			}
			fmt.Fprintf(env.Stdout, "Enrollment token %s (channel %s, expires %s):\n  %s\n\nOn each host:\n  stent agent --server %s --enroll %s",
				t.ID, t.Channel, t.ExpiresAt.Format(time.RFC3339), t.Secret, sf.server, t.Secret)
			if sf.fingerprint != "" {
				fmt.Fprintf(env.Stdout, " --fingerprint %s", sf.fingerprint)
			}
			fmt.Fprintln(env.Stdout)
			return nil
		},
	}
	c.Flags().StringVar(&req.Name, "name", "hosts", "what the token is for")
	c.Flags().StringVar(&req.Channel, "channel", "stable", "channel the hosts join")
	c.Flags().StringArrayVar(&labels, "label", nil, "label key=value given to the hosts (repeatable)")
	c.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token can be used")
	c.Flags().IntVar(&req.MaxUses, "max-uses", 0, "how many hosts may use it (0: any number until it expires)")
	jsonFlag(c, &asJSON)
	return c
}

func fleetTokenCmd(env *Env, sf *serverFlags) *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Create, list and revoke admin tokens"}
	var req api.TokenRequest
	var ttl time.Duration
	var asJSON bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an admin token and print its secret",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.TTL = api.Duration(ttl)
			t, err := admin(sf, func(c *api.Client) (*api.Token, error) { return c.CreateToken(cmd.Context(), req) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, t)
			}
			fmt.Fprintln(env.Stdout, t.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&req.Name, "name", "", "what the token is for (required)")
	create.Flags().StringVar(&req.Role, "role", api.RoleViewer, "viewer, operator or admin")
	create.Flags().DurationVar(&ttl, "ttl", 0, "expiry (0: never)")
	jsonFlag(create, &asJSON)
	list := &cobra.Command{
		Use:   "list",
		Short: "List admin tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := admin(sf, func(c *api.Client) ([]api.Token, error) { return c.Tokens(cmd.Context()) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, ts)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tROLE\tCREATED\tEXPIRES\tREVOKED")
			for _, t := range ts {
				exp := "never"
				if !t.ExpiresAt.IsZero() {
					exp = t.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\n", t.ID, t.Name, t.Role, t.CreatedAt.Format(time.RFC3339), exp, t.Revoked)
			}
			return w.Flush()
		},
	}
	jsonFlag(list, &asJSON)
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an admin token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminDo(sf, func(c *api.Client) error { return c.RevokeToken(cmd.Context(), args[0]) })
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}
