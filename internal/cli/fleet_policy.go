package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetPolicyCmd(env *Env, sf *serverFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Show or set the planning policy the server plans with: rules, presets, windows, exceptions, unattended actions",
		Long: `The policy stent-server plans the fleet with (stent fleet plan): the policy file
of "stent plan --policy" (docs/policy.md), kept on the server in versions.
Each "set" is a new version (the old ones are kept and listed by "show"),
an audit entry policy.set, and a new plan under it at once. Until one is
set the server plans with the default preset.`,
	}
	c.AddCommand(fleetPolicyShowCmd(env, sf), fleetPolicySetCmd(env, sf))
	return c
}

func fleetPolicyShowCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON, source bool
	var version int
	c := &cobra.Command{
		Use:   "show [--version N] [--source] [--json]",
		Short: "Show the policy in force (or version N) and the list of versions",
		Long: `Show the policy in force, or version N with --version: its rules, windows,
exceptions and unattended actions, then every version (who set it, when,
why). --source prints the policy file as it was uploaded instead, to edit
and set again. Exit codes: 0 shown, 1 error (no such version).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := admin(sf, func(c *api.Client) (*api.PolicyStatus, error) { return c.Policy(cmd.Context(), version) })
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				return writeJSON(env.Stdout, st)
			case source && st.Current.Version == 0:
				return fmt.Errorf("version 0 is the built-in default policy: it has no file (docs/policy.md shows one)")
			case source:
				_, err := io.WriteString(env.Stdout, st.Current.Source)
				return err
			}
			printPolicy(env.Stdout, st)
			return nil
		},
	}
	jsonFlag(c, &asJSON)
	c.Flags().IntVar(&version, "version", 0, "show this version instead of the one in force")
	c.Flags().BoolVar(&source, "source", false, "print the uploaded policy file")
	return c
}

func fleetPolicySetCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	var reason string
	c := &cobra.Command{
		Use:   "set FILE [--reason TEXT] [--json]",
		Short: "Put a policy file in force on the server as its next version (admin)",
		Long: `Upload a policy file (the JSON of "stent plan --policy", docs/policy.md) as the
server's next policy version; the live plan is made again under it. A file
that does not parse is refused with its line, column and field, and the
policy in force is unchanged. Needs an admin token.

Exit codes: 0 set, 1 refused or error, 4 the token is not an admin's.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			v, err := admin(sf, func(c *api.Client) (*api.PolicyVersion, error) {
				return c.PutPolicy(cmd.Context(), api.PolicyUpload{File: args[0], Source: string(data), Reason: reason})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, v)
			}
			fmt.Fprintf(env.Stdout, "policy version %d in force (%s, sha256 %s)\n", v.Version, api.Escape(v.File), v.SHA256)
			return nil
		},
	}
	jsonFlag(c, &asJSON)
	reasonFlag(c, &reason)
	return c
}

func printPolicy(out io.Writer, st *api.PolicyStatus) {
	cur := st.Current
	if cur.Version == 0 {
		fmt.Fprintln(out, "Policy: the built-in default (version 0; no policy was set).")
	} else {
		fmt.Fprintf(out, "Policy version %d: %s, set %s by %s", cur.Version, api.Escape(cur.File), cur.CreatedAt.Format("2006-01-02 15:04Z07:00"), api.Escape(cur.CreatedBy))
		if cur.Reason != "" {
			fmt.Fprintf(out, " (%s)", api.Escape(cur.Reason))
		}
		fmt.Fprintln(out)
	}
	if p := cur.Policy; p != nil {
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "Presets:\t%s\n", strings.Join(p.Presets, ", "))
		for _, r := range p.Rules {
			fmt.Fprintf(w, "Rule %s:\t%s within %s\n", r.ID, r.Kind, r.Within)
		}
		for _, win := range p.Windows {
			fmt.Fprintf(w, "Window %s:\t%s\n", win.Name, win.When)
		}
		for _, e := range p.Exceptions {
			fmt.Fprintf(w, "Exception:\t%s until %s: %s\n", strings.Join(e.CVEs, ", "), e.Expires.Format("2006-01-02"), api.Escape(e.Reason))
		}
		unattended := "none (every action waits for approval)"
		if len(p.Unattended) > 0 {
			unattended = strings.Join(p.Unattended, ", ")
		}
		fmt.Fprintf(w, "Unattended:\t%s\n", unattended)
		w.Flush()
	}
	if len(st.Versions) == 0 {
		return
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tFILE\tSET\tBY\tREASON")
	for _, v := range st.Versions {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", v.Version, api.Escape(v.File), v.CreatedAt.Format("2006-01-02 15:04Z07:00"), api.Escape(v.CreatedBy), api.Escape(v.Reason))
	}
	w.Flush()
}
