package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

func init() { addCommand(newPlanCmd) }

// planFlags are the inputs of plan and report.
type planFlags struct {
	inventories []string
	feeds       []string
	policyFile  string
	now         string
	cacheDir    string
	offline     bool
}

func (f *planFlags) bind(cmd *cobra.Command, env *Env) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.inventories, "inventory", nil, "host inventory JSON (from stent inventory --json), or a folder of them; repeatable")
	fl.StringArrayVar(&f.feeds, "feed", nil, "vulnerability feed KIND=PATH or KIND=https://URL, KIND one of debian-changelog, cna, osv, nvd, livepatch; repeatable")
	fl.StringVar(&f.policyFile, "policy", "", "policy file (JSON, see docs/policy.md); default: the default preset")
	fl.StringVar(&f.now, "now", "", "the current time, RFC 3339 (for reproducible plans)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "where feeds fetched over HTTPS are cached (default STATE_DIR/feeds)")
	fl.BoolVar(&f.offline, "offline", false, "use cached copies of feed URLs without asking the servers")
}

// plan loads every input, all or nothing, and plans.
func (f *planFlags) plan(ctx context.Context, env *Env) (*policy.FleetPlan, error) {
	if len(f.inventories) == 0 {
		return nil, withCode(2, fmt.Errorf("no inventories: give --inventory FILE (from stent inventory --json)"))
	}
	if len(f.feeds) == 0 {
		return nil, withCode(2, fmt.Errorf("no feeds: give --feed KIND=PATH (debian-changelog, cna, osv, nvd, livepatch)"))
	}
	now, err := parseNow(f.now)
	if err != nil {
		return nil, withCode(2, err)
	}
	var specs []vuln.FeedSpec
	for _, s := range f.feeds {
		spec, err := vuln.ParseFeedSpec(s)
		if err != nil {
			return nil, withCode(2, err)
		}
		specs = append(specs, spec)
	}
	pol := policy.Default()
	if f.policyFile != "" {
		fh, err := os.Open(f.policyFile)
		if err != nil {
			return nil, err
		}
		pol, err = policy.Parse(f.policyFile, fh)
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	invs, names, err := readInventories(f.inventories)
	if err != nil {
		return nil, err
	}
	cache := f.cacheDir
	if cache == "" {
		cache = filepath.Join(env.StateDir, "feeds")
	}
	keys := func() (*bundle.Keyring, error) {
		kr, err := bundle.LoadKeyring(env.KeysDir)
		if err != nil {
			return nil, fmt.Errorf("%w (give the folder of the publishers' *.pub keys with --keys-dir)", err)
		}
		return kr, nil
	}
	db, err := vuln.Load(ctx, specs, vuln.LoadOptions{Fetcher: &vuln.Fetcher{CacheDir: cache, Log: env.Log, Offline: f.offline}, Keys: keys})
	if errors.Is(err, vuln.ErrNoFixFeed) {
		return nil, withCode(2, err) // a usage error, like no feeds at all
	}
	if err != nil {
		return nil, err
	}
	warnSkipped(env.Stderr, db.Feeds)
	return policy.Plan(policy.Input{Inventories: invs, Names: names, DB: db, Policy: pol, Now: now})
}

// warnSkipped names on stderr the records the feeds left out, so that a
// plan never drops CVEs without saying so.
func warnSkipped(w io.Writer, feeds []vuln.FeedInfo) {
	for _, fi := range feeds {
		if fi.Skipped == 0 && len(fi.Warnings) == 0 {
			continue
		}
		fmt.Fprintf(w, "warning: feed %s=%s: %d record(s) skipped\n", fi.Kind, fi.Location, fi.Skipped)
		for _, m := range fi.Warnings {
			fmt.Fprintf(w, "  %s\n", api.Escape(m))
		}
		if n := fi.Skipped - len(fi.Warnings); n > 0 {
			fmt.Fprintf(w, "  (and %d more)\n", n)
		}
	}
}

func readInventories(args []string) ([]*inventory.Inventory, []string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(a, "*.json"))
		if err != nil {
			return nil, nil, err
		}
		if len(matches) == 0 {
			return nil, nil, fmt.Errorf("inventory folder %s holds no *.json files", a)
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	var invs []*inventory.Inventory
	for _, p := range files {
		fh, err := os.Open(p)
		if err != nil {
			return nil, nil, err
		}
		inv, err := inventory.Decode(p, fh)
		fh.Close()
		if err != nil {
			return nil, nil, err
		}
		invs = append(invs, inv)
	}
	return invs, files, nil
}

func newPlanCmd(env *Env) *cobra.Command {
	var f planFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan --inventory FILE... --feed KIND=PATH... [--policy FILE] [--json]",
		Short: "Decide per host and per CVE: live patch now, emergency reboot, or reboot in the window",
		Long: `Plan a fleet's kernel patching. For every host (an inventory from
"stent inventory --json") and every CVE the feeds know, tell its state (fixed
in the running kernel, by a live patch, in an installed kernel, in a released
package, not fixed yet, not affected, unknown) and decide:

  urgent (CVSS >= 7.0 by default) and a live patch exists: apply it now, and
    still take the kernel update at the next scheduled reboot;
  urgent without a live patch: emergency reboot into a fixed kernel;
  otherwise: upgrade the package and reboot in the next maintenance window.

Feeds: debian-changelog (a changelog or changelog.gz of a linux-image package),
cna (a folder or .tar.gz in the kernel CNA's cve/published layout), osv (a file,
folder or .zip of OSV records), nvd (NVD CVE API 2.0 responses), livepatch (live
patch manifests available to apply, or the signed bundles themselves: *.bundle
and *.stb files are verified against the keys in --keys-dir and their
manifests used). A feed that cannot be read, or that yields no record, fails
the whole plan. In a cna feed, a record Stent cannot read is left out and named
on stderr and in the plan's feeds[].skipped and feeds[].warnings, up to 10
records or 1% of the feed, whichever is more; more than that fails the plan.

The --json output can be saved and rendered later, or on another machine,
by "stent report --plan FILE", without the feeds.

Exit codes: 0 planned; 1 an input could not be read or judged (the file and
field are named); 2 a usage error: no --inventory or --feed, a malformed
--feed or --now, or no feed that says which kernels fix which CVE
(debian-changelog, cna or osv).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fp, err := f.plan(cmd.Context(), env)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, fp)
			}
			printPlan(env.Stdout, fp)
			return nil
		},
	}
	f.bind(cmd, env)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format("2006-01-02 15:04Z07:00")
}

func printPlan(out io.Writer, fp *policy.FleetPlan) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Plan at %s for %d host(s); rules: ", fp.GeneratedAt.Format(time.RFC3339), len(fp.Hosts))
	var ids []string
	for _, r := range fp.Policy.Rules {
		ids = append(ids, r.ID)
	}
	fmt.Fprintf(w, "%s\n", strings.Join(ids, ", "))
	for _, fr := range fp.Fleet {
		fmt.Fprintf(w, "  %s:\t%d compliant, %d at risk, %d breached, %d excepted\n", fr.Rule, fr.Hosts[policy.Compliant], fr.Hosts[policy.AtRisk], fr.Hosts[policy.Breached], fr.Hosts[policy.Excepted])
	}
	for _, h := range fp.Hosts {
		fmt.Fprintf(w, "\n%s\t%s, kernel %s (%s)\n", h.Hostname, h.Distro, h.Kernel.Release, h.Kernel.PackageVersion)
		var counts []string
		for _, s := range vuln.States {
			if n := h.Counts[s]; n > 0 {
				counts = append(counts, fmt.Sprintf("%d %s", n, s))
			}
		}
		fmt.Fprintf(w, "  CVEs:\t%s\n", strings.Join(counts, ", "))
		for _, rr := range h.Compliance {
			fmt.Fprintf(w, "  %s:\t%s (deadline %s, %.1f days exposed)\n", rr.Rule, rr.Status, fmtTime(rr.Deadline), rr.DaysExposed)
			if rr.Note != "" {
				fmt.Fprintf(w, "  \t  %s\n", rr.Note)
			}
		}
		if len(h.Actions) == 0 {
			fmt.Fprintf(w, "  Actions:\tnone\n")
		}
		for i, a := range h.Actions {
			line := a.Summary
			if a.Deadline != nil && !strings.Contains(line, "before") {
				line += " (deadline " + fmtTime(a.Deadline) + ")"
			}
			if n := len(a.CVEs); n > 0 {
				noun := "CVEs"
				if n == 1 {
					noun = "CVE"
				}
				line += fmt.Sprintf(" [%d %s: %s]", n, noun, abbrev(a.CVEs, 3))
			}
			if a.Note != "" {
				line += " -- " + a.Note
			}
			fmt.Fprintf(w, "  %d.\t%s\n", i+1, line)
		}
	}
	w.Flush()
}

func abbrev(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(", +%d", len(list)-n)
}
