package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stent-dev/stent/api"
)

func init() { addCommand(newFleetCmd) }

// serverFlags are how the admin commands (fleet, publish) reach a server.
type serverFlags struct {
	server, token, tokenFile, fingerprint, caFile string
}

func (f *serverFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.server, "server", os.Getenv("STENT_SERVER"), "server URL, https://host:8443 (env STENT_SERVER)")
	fs.StringVar(&f.token, "token", "", "admin token (env STENT_TOKEN)")
	fs.StringVar(&f.tokenFile, "token-file", os.Getenv("STENT_TOKEN_FILE"), "file holding the admin token (env STENT_TOKEN_FILE)")
	fs.StringVar(&f.fingerprint, "fingerprint", os.Getenv("STENT_SERVER_FINGERPRINT"), "pin the server certificate by fingerprint, sha256:... (env STENT_SERVER_FINGERPRINT)")
	fs.StringVar(&f.caFile, "ca-file", os.Getenv("STENT_CA_FILE"), "trust the server certificate through this CA file (env STENT_CA_FILE)")
}

func (f *serverFlags) client() (*api.Client, error) {
	if f.server == "" {
		return nil, errors.New("no server: pass --server https://HOST:8443 or set STENT_SERVER")
	}
	tok := f.token
	if tok == "" {
		tok = os.Getenv("STENT_TOKEN")
	}
	if tok == "" && f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("no admin token: pass --token or --token-file, or set STENT_TOKEN (the server wrote its first one to <data-dir>/admin.token)")
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: f.fingerprint, CAFile: f.caFile})
	if err != nil {
		return nil, err
	}
	return &api.Client{BaseURL: f.server, Token: tok, HTTP: hc, Agent: "stent-cli"}, nil
}

// adminCall runs one call with the flags' client; the errors name what to
// do about the usual causes.
func adminCall(ctx context.Context, sf *serverFlags, method, path string, in, out any) error {
	c, err := sf.client()
	if err != nil {
		return err
	}
	return adminError(sf, method, path, c.Do(ctx, method, path, in, out))
}

// adminError names what to do about the usual causes of a failed call.
func adminError(sf *serverFlags, method, path string, err error) error {
	switch {
	case api.IsStatus(err, http.StatusUnauthorized):
		return fmt.Errorf("%s %s: %w (check --token)", method, path, err)
	case api.IsStatus(err, http.StatusForbidden):
		return withCode(4, fmt.Errorf("%s %s: %w", method, path, err))
	case err != nil && strings.Contains(err.Error(), "certificate"):
		return fmt.Errorf("%s: %w (pin the server with --fingerprint, printed by stent-server fingerprint)", sf.server, err)
	}
	return err
}

func newFleetCmd(env *Env) *cobra.Command {
	sf := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Operate a fleet through stent-server: status, hosts, rollouts, kernels and reboots, tokens, audit log",
		Long: `Operate a fleet through stent-server: status, hosts, rollouts, tokens, audit log,
and the hosts' inventories for "stent plan".

The server and the admin token come from --server and --token (or
--token-file), or from STENT_SERVER and STENT_TOKEN (or STENT_TOKEN_FILE);
the server's first admin token is in its <data-dir>/admin.token.

Exit codes: 0 done, 1 error, 4 the token's role does not allow the action
(viewer reads; operator also rolls out and makes enrollment tokens; admin
also manages admin tokens, revokes hosts and changes settings).`,
	}
	sf.bind(cmd.PersistentFlags())
	add := func(c *cobra.Command) { cmd.AddCommand(c) }
	add(fleetStatusCmd(env, sf))
	add(fleetHostsCmd(env, sf))
	add(fleetInventoriesCmd(env, sf))
	add(fleetRolloutCmd(env, sf))
	for _, action := range []string{"pause", "resume", "revert"} {
		add(fleetActionCmd(env, sf, action))
	}
	add(fleetEnrollTokenCmd(env, sf))
	add(fleetTokenCmd(env, sf))
	add(fleetAuditCmd(env, sf))
	add(fleetRevokeHostCmd(env, sf))
	add(fleetSettingsCmd(env, sf))
	add(fleetWindowsCmd(env, sf))
	add(fleetRebootsCmd(env, sf))
	add(fleetKernelsCmd(env, sf))
	return cmd
}

func fleetStatusCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show hosts by state, kernel and patch, and every rollout's progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st api.FleetStatus
			if err := adminCall(cmd.Context(), sf, http.MethodGet, api.PathFleet, nil, &st); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, st)
			}
			printFleet(env.Stdout, &st)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
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

func printRollouts(out io.Writer, rs []api.Rollout) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  ID\tPATCH\tLEVEL\tCHANNEL\tSTATE\tWAVE\tTARGET\tAPPLIED\tHEALTHY\tFAILED\tREVERTED")
	for _, r := range rs {
		fmt.Fprintf(w, "  %s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", r.ID, r.Name, r.Level, r.Channel, r.State,
			waveName(r), r.Counts.Target, r.Counts.Applied, r.Counts.Healthy, r.Counts.Failed, r.Counts.Reverted)
		if r.Reason != "" {
			fmt.Fprintf(w, "  \t%s\n", r.Reason)
		}
	}
	w.Flush()
}

func waveName(r api.Rollout) string {
	if r.Wave == 0 {
		return "canary"
	}
	if r.Wave <= len(r.Waves) {
		return fmt.Sprintf("%d/%d (%d%%)", r.Wave, len(r.Waves), r.Waves[r.Wave-1])
	}
	return strconv.Itoa(r.Wave)
}

func fleetHostsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "hosts [ID]",
		Short: "List enrolled hosts, or show one with its inventory",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				var h api.Host
				if err := adminCall(cmd.Context(), sf, http.MethodGet, api.PathHosts+"/"+url.PathEscape(args[0]), nil, &h); err != nil {
					return err
				}
				return writeJSON(env.Stdout, h)
			}
			var hs []api.Host
			if err := adminCall(cmd.Context(), sf, http.MethodGet, api.PathHosts, nil, &hs); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, hs)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tHOSTNAME\tCHANNEL\tKERNEL\tSTATE\tHEALTH\tPATCHES\tLAST SEEN")
			for _, h := range hs {
				state := "offline"
				switch {
				case h.Revoked:
					state = "revoked"
				case h.Online:
					state = "online"
				}
				var ps []string
				for _, p := range h.Patches {
					if p.Enabled {
						ps = append(ps, api.Escape(p.Name))
					}
				}
				seen := "never"
				if !h.LastSeen.IsZero() {
					seen = time.Since(h.LastSeen).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, api.Escape(h.Hostname), h.Channel, api.Escape(h.KernelRelease), state, api.Escape(h.Health), strings.Join(ps, ","), seen)
			}
			return w.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}

// listOrShow answers "COMMAND [ID]" for the admin collection at path:
// without an ID it lists the collection with list; with one it shows that
// item as a one-line list followed by details. --json prints the server's
// answer as it is.
func listOrShow[T any](cmd *cobra.Command, env *Env, sf *serverFlags, path string, args []string, asJSON bool,
	list func(io.Writer, []T), details func(T) error) error {
	if len(args) == 0 {
		var all []T
		if err := adminCall(cmd.Context(), sf, http.MethodGet, path, nil, &all); err != nil {
			return err
		}
		if asJSON {
			return writeJSON(env.Stdout, all)
		}
		list(env.Stdout, all)
		return nil
	}
	var one T
	if err := adminCall(cmd.Context(), sf, http.MethodGet, path+"/"+url.PathEscape(args[0]), nil, &one); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.Stdout, one)
	}
	list(env.Stdout, []T{one})
	return details(one)
}

func fleetRolloutCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "rollouts [ID]",
		Short: "List rollouts, or show one with each host's state",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listOrShow(cmd, env, sf, api.PathRollouts, args, asJSON, printRollouts, func(r api.Rollout) error {
				w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "\nHOST\tHOSTNAME\tWAVE\tSTATE\tERROR")
				for _, h := range r.Hosts {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", h.HostID, api.Escape(h.Hostname), h.Wave, h.State, api.Escape(h.Error))
				}
				return w.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}

func fleetActionCmd(env *Env, sf *serverFlags, action string) *cobra.Command {
	var reason, patch string
	var maxFail float64
	var asJSON bool
	short := map[string]string{
		"pause":  "Pause a rollout: no further waves until resumed",
		"resume": "Resume a paused or halted rollout",
		"revert": "Revert a rollout's patch on its hosts, or with --patch a patch on the whole fleet",
	}[action]
	c := &cobra.Command{
		Use:   action + " [ROLLOUT]",
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rs []api.Rollout
			switch {
			case action == "revert" && patch != "":
				if len(args) > 0 {
					return errors.New("give a rollout id or --patch, not both")
				}
				if err := adminCall(cmd.Context(), sf, http.MethodPost, api.PathRevert, api.RevertRequest{Name: patch, Reason: reason}, &rs); err != nil {
					return err
				}
			case len(args) == 1:
				req := api.RolloutActionRequest{Reason: reason}
				if cmd.Flags().Changed("max-failure-pct") {
					req.MaxFailurePct = &maxFail
				}
				var r api.Rollout
				if err := adminCall(cmd.Context(), sf, http.MethodPost, api.PathRollouts+"/"+url.PathEscape(args[0])+"/"+action, req, &r); err != nil {
					return err
				}
				rs = append(rs, r)
			default:
				return errors.New("which rollout? give its id (stent fleet rollouts lists them)")
			}
			if asJSON {
				return writeJSON(env.Stdout, rs)
			}
			printRollouts(env.Stdout, rs)
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	if action == "resume" {
		c.Flags().Float64Var(&maxFail, "max-failure-pct", 0, "new failure threshold, to go on past failures you accept")
	}
	if action == "revert" {
		c.Flags().StringVar(&patch, "patch", "", "revert this patch on every host of every rollout of it")
	}
	return c
}

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
			var t api.Token
			if err := adminCall(cmd.Context(), sf, http.MethodPost, api.PathEnrollToken, req, &t); err != nil {
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
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
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
			var t api.Token
			if err := adminCall(cmd.Context(), sf, http.MethodPost, api.PathTokens, req, &t); err != nil {
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
	create.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	list := &cobra.Command{
		Use:   "list",
		Short: "List admin tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ts []api.Token
			if err := adminCall(cmd.Context(), sf, http.MethodGet, api.PathTokens, nil, &ts); err != nil {
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
	list.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an admin token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminCall(cmd.Context(), sf, http.MethodDelete, api.PathTokens+"/"+url.PathEscape(args[0]), nil, nil)
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}

func fleetAuditCmd(env *Env, sf *serverFlags) *cobra.Command {
	var action, target string
	var after int64
	var limit int
	var asJSON bool
	c := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: admin actions and every host's apply, revert and reboot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if action != "" {
				q.Set("action", action)
			}
			if target != "" {
				q.Set("target", target)
			}
			q.Set("after", strconv.FormatInt(after, 10))
			q.Set("limit", strconv.Itoa(limit))
			var es []api.AuditEntry
			if err := adminCall(cmd.Context(), sf, http.MethodGet, api.PathAudit+"?"+q.Encode(), nil, &es); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, es)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			for _, e := range es {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.At.Format(time.RFC3339), e.Actor, e.Action, e.Target, string(e.Detail))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&action, "action", "", "only this action (e.g. host.apply, rollout.halt)")
	c.Flags().StringVar(&target, "target", "", "only this target (host, rollout or token id)")
	c.Flags().Int64Var(&after, "after", 0, "only entries after this id")
	c.Flags().IntVar(&limit, "limit", 100, "at most this many entries")
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}

func fleetRevokeHostCmd(env *Env, sf *serverFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-host ID",
		Short: "Revoke a host's credential: its agent is refused from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminCall(cmd.Context(), sf, http.MethodDelete, api.PathHosts+"/"+url.PathEscape(args[0]), nil, nil)
		},
	}
}

func fleetSettingsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "settings",
		Short: "Show or change server settings (the agents' check-in interval)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s api.Settings
			if cmd.Flags().Changed("checkin-interval") {
				if err := adminCall(cmd.Context(), sf, http.MethodPut, api.PathSettings, api.Settings{CheckinInterval: api.Duration(interval)}, &s); err != nil {
					return err
				}
			} else if err := adminCall(cmd.Context(), sf, http.MethodGet, api.PathSettings, nil, &s); err != nil {
				return err
			}
			return writeJSON(env.Stdout, s)
		},
	}
	c.Flags().DurationVar(&interval, "checkin-interval", 0, "set the longest interval between agent check-ins")
	return c
}
