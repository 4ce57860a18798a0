package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func factoryStatusCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show each upload the factory found, its fixes, and each kernel build's live patch and where it stands",
		Long: `Show the patch factory's state as the server keeps it: each kernel upload
(newest first) with the fixes it brings and their CVEs, and for each
kernel build the fleet runs the job of its cumulative live patch: building,
refused (with the builder's reason per fix: for those CVEs the path is a
reboot), failed (why), smoke-tested, published, rolled-out, and the time
each step took. --json prints the server's FactoryStatus.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := admin(sf, func(c *api.Client) (*api.FactoryStatus, error) { return c.FactoryStatus(cmd.Context()) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, st)
			}
			printFactory(env.Stdout, st)
			return nil
		},
	}
	jsonFlag(c, &asJSON)
	return c
}

func printFactory(w io.Writer, st *api.FactoryStatus) {
	if len(st.Uploads) == 0 {
		fmt.Fprintln(w, "No uploads yet.")
		return
	}
	jobs := map[string][]api.FactoryJob{}
	for _, j := range st.Jobs {
		jobs[j.Upload] = append(jobs[j.Upload], j)
	}
	for _, u := range st.Uploads {
		fmt.Fprintf(w, "Upload %s (over %s), seen %s: %d fixes%s\n", u.Version, u.Previous, u.SeenAt.Format(time.RFC3339), len(u.Fixes), steps(u.Steps))
		if u.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", u.Error)
		}
		for _, f := range u.Fixes {
			cves := "no CVE"
			if len(f.CVEs) > 0 {
				cves = strings.Join(f.CVEs, ", ")
			}
			fmt.Fprintf(w, "  fix %d  %s  [%s; %s]\n", f.Index, f.Summary, cves, f.Origin)
		}
		if len(u.Unattributed) > 0 {
			fmt.Fprintf(w, "  unattributed: %s\n", strings.Join(u.Unattributed, " "))
		}
		for _, j := range jobs[u.Version] {
			fmt.Fprintf(w, "  kernel %s (%d hosts): %s%s\n", j.Kernel, j.Hosts, j.State, steps(j.Steps))
			if j.Bundle != "" {
				fmt.Fprintf(w, "    bundle %s level %d, %s, signed by %s\n", short(j.Bundle), j.Level, j.Name, j.KeyID)
			}
			if j.Rollout != "" {
				fmt.Fprintf(w, "    rollout %s\n", j.Rollout)
			}
			if j.Waiting != "" {
				fmt.Fprintf(w, "    waiting: %s\n", j.Waiting)
			}
			for _, r := range j.Refused {
				fmt.Fprintf(w, "    fix %d refused (%s): %s\n", r.Fix, strings.Join(r.CVEs, ", "), r.Reason)
			}
			if j.Error != "" {
				fmt.Fprintf(w, "    error: %s\n", j.Error)
			}
		}
	}
}

func steps(ss []api.FactoryStep) string {
	if len(ss) == 0 {
		return ""
	}
	var parts []string
	for _, s := range ss {
		parts = append(parts, fmt.Sprintf("%s %.1fs", s.Name, s.Duration.Seconds()))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
