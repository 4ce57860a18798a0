package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetFeedsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON, refresh bool
	c := &cobra.Command{
		Use:   "feeds [--refresh] [--json]",
		Short: "Show the vulnerability feeds the server keeps for planning: records, last success, why not",
		Long: `Show the vulnerability feeds stent-server keeps current for planning (its
--feed settings, refreshed every --feed-interval, and the livepatch feed of
the bundles published to it): per feed the records of the copy in use, when
it was fetched, the last refresh that succeeded and, for a feed whose last
refresh failed, why. A failing feed keeps its last good copy in use.

--refresh (an operator token) makes the server refresh every feed first and
shows the result.

Exit codes: 0 shown (even when feeds fail: read ERROR), 1 error, 4 the
token's role does not allow --refresh.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := admin(sf, func(c *api.Client) (*api.FeedsStatus, error) {
				if refresh {
					return c.RefreshFeeds(cmd.Context())
				}
				return c.Feeds(cmd.Context())
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, st)
			}
			printFeeds(env.Stdout, st, time.Now())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON, as the server sent it")
	c.Flags().BoolVar(&refresh, "refresh", false, "refresh every feed now, then show them (operator)")
	return c
}

func printFeeds(out io.Writer, st *api.FeedsStatus, now time.Time) {
	switch {
	case st.Generation == 0 && st.Error != "":
		fmt.Fprintf(out, "No vulnerability database yet: %s\n", api.Escape(st.Error))
	case st.Generation == 0:
		fmt.Fprintln(out, "No vulnerability database yet.")
	default:
		fmt.Fprintf(out, "Vulnerability database: generation %d, built %s.\n", st.Generation, ago(st.BuiltAt, now))
		if st.Error != "" {
			fmt.Fprintf(out, "The feeds in use now make none (generation %d stays in use): %s\n", st.Generation, api.Escape(st.Error))
		}
	}
	fmt.Fprintf(out, "Feeds are refreshed every %s.\n\n", time.Duration(st.Interval))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tLOCATION\tRECORDS\tFETCHED\tLAST SUCCESS\tSTATE")
	for _, f := range st.Feeds {
		state := "ok"
		switch {
		case f.Automatic && f.Records == 0:
			state = "no bundles published"
		case f.Automatic:
			state = "ok (published bundles)"
		case f.Error != "" && f.InUse:
			state = fmt.Sprintf("FAILING (%d in a row), the last good copy in use", f.Failures)
		case f.Error != "":
			state = fmt.Sprintf("FAILING (%d in a row), not in use", f.Failures)
		case f.LastAttempt.IsZero():
			state = "not loaded yet"
		}
		fetched := "-"
		if f.FetchedAt != nil {
			fetched = ago(*f.FetchedAt, now)
		}
		records := fmt.Sprint(f.Records)
		if f.Skipped > 0 {
			records += fmt.Sprintf(" (%d skipped)", f.Skipped)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", api.Escape(f.Kind), api.Escape(f.Location), records, fetched, ago(f.LastSuccess, now), state)
	}
	w.Flush()
	for _, f := range st.Feeds {
		if f.Error != "" {
			fmt.Fprintf(out, "\n%s=%s: %s\n", api.Escape(f.Kind), api.Escape(f.Location), api.Escape(f.Error))
		}
		if len(f.Warnings) > 0 {
			fmt.Fprintf(out, "\n%s=%s: %d record(s) skipped:\n", api.Escape(f.Kind), api.Escape(f.Location), f.Skipped)
			for _, m := range f.Warnings {
				fmt.Fprintf(out, "  %s\n", api.Escape(m))
			}
		}
	}
}

// ago is t in UTC with how long ago it was, or "never".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format("2006-01-02 15:04Z"), now.Sub(t).Round(time.Second))
}
