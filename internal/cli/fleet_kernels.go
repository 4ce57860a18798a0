package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

func fleetKernelsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "kernels [ID]",
		Short: "List kernel rollouts, or show one with each host's state (rollout, pause, resume, cancel: change them)",
		Long: `List kernel rollouts: install a kernel package version on a set of hosts and
reboot each into it in its maintenance window (or at once, within the fleet's
reboot budget, for an emergency whose deadline comes first). A host that comes
back on its previous kernel halts the rollout. With ID, show every host's state:
installing, installed (waiting for its window or lease), rebooting, healthy,
failed, fell-back.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listOrShow(cmd, env, sf, args, asJSON, (*api.Client).KernelRollouts, (*api.Client).KernelRollout, printKernelRollouts, func(r api.KernelRollout) error {
				w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "\nHOST\tHOSTNAME\tSTATE\tDETAIL")
				for _, h := range r.Targets {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", h.HostID, api.Escape(h.Hostname), h.State, api.Escape(h.Detail))
				}
				return w.Flush()
			})
		},
	}
	jsonFlag(c, &asJSON)
	c.AddCommand(fleetKernelRolloutCmd(env, sf))
	for _, action := range []string{"pause", "resume", "cancel"} {
		c.AddCommand(fleetKernelActionCmd(env, sf, action))
	}
	return c
}

func printKernelRollouts(out io.Writer, rs []api.KernelRollout) {
	if len(rs) == 0 {
		fmt.Fprintln(out, "No kernel rollouts.")
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tRELEASE\tVERSION\tSTATE\tHOSTS\tEMERGENCY\tREASON")
	for _, r := range rs {
		var counts []string
		for _, st := range []string{api.KernelHealthy, api.KernelRebooting, api.KernelInstalled, api.KernelInstalling, api.KernelPending, api.KernelFailed, api.KernelFellBack} {
			if n := r.Counts[st]; n > 0 {
				counts = append(counts, fmt.Sprintf("%d %s", n, st))
			}
		}
		em := "-"
		if r.Emergency {
			em = "yes"
			if r.Deadline != nil {
				em = "before " + r.Deadline.UTC().Format(time.RFC3339)
			}
		}
		state := r.State
		if r.Halt != "" {
			state += ": " + api.Escape(r.Halt) // quotes a host's fallback reason
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Release, dash(r.Version), state, strings.Join(counts, ", "), em, dash(r.Reason))
	}
	w.Flush()
}

func fleetKernelRolloutCmd(env *Env, sf *serverFlags) *cobra.Command {
	var req api.KernelRolloutRequest
	var selector, releases []string
	var deadline, fromPlan string
	var asJSON bool
	c := &cobra.Command{
		Use:   "rollout (--release R --version V [--selector k=v] [--host H] [--emergency --deadline T] | --from-plan PLAN.json)",
		Short: "Start a kernel rollout, by hand or from a saved stent plan",
		Long: `Start a kernel rollout: the hosts install the kernel packages at --version
and reboot into --release in their maintenance windows, --max-unavailable of a
group at a time. --emergency lets them reboot outside the window (still within
the budget) when --deadline comes before the window opens, or at once without
a deadline.

--from-plan PLAN.json reads a plan saved with "stent plan --json" and starts
one rollout per target kernel and urgency from the plan's upgrade-package,
reboot and emergency-reboot actions, for the plan's hosts enrolled on the
server (matched by hostname), with the actions' deadline and CVEs as reason.
Where the plan asks to upgrade a package to a version, it cannot know the
kernel release that version installs: name it with --release VERSION=RELEASE
(or a bare --release RELEASE when the plan has one such version).`,
		Example: `  stent fleet kernels rollout --release 6.1.0-57-amd64 --version 6.1.192-3 --selector role=web --reason CVE-2026-1234
  stent plan --json > plan.json && stent fleet kernels rollout --from-plan plan.json --release 6.1.192-1=6.1.0-57-amd64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var reqs []api.KernelRolloutRequest
			if fromPlan != "" {
				if req.Version != "" || len(selector) > 0 || len(req.Hosts) > 0 || req.Emergency || deadline != "" || req.Reason != "" {
					return errors.New("--from-plan takes the hosts, versions, urgency and reasons from the plan: give only --release VERSION=RELEASE with it")
				}
				f, err := os.Open(fromPlan)
				if err != nil {
					return fmt.Errorf("--from-plan: %w", err)
				}
				fp, err := policy.DecodePlan(fromPlan, f)
				f.Close()
				if err != nil {
					return err
				}
				hosts, err := admin(sf, func(c *api.Client) ([]api.Host, error) { return c.Hosts(cmd.Context()) })
				if err != nil {
					return err
				}
				enrolled := map[string]bool{}
				for _, h := range hosts {
					if !h.Revoked {
						enrolled[h.Hostname] = true
					}
				}
				var warnings []string
				reqs, warnings, err = kernelRolloutsFromPlan(fp, releases, enrolled)
				for _, w := range warnings {
					fmt.Fprintln(env.Stderr, "stent: "+w)
				}
				if err != nil {
					return err
				}
				if len(reqs) == 0 {
					return errors.New("--from-plan: the plan asks no enrolled host for a kernel upgrade or reboot; nothing to roll out")
				}
			} else {
				if len(releases) != 1 || strings.Contains(releases[0], "=") {
					return errors.New("--release is required once: the kernel release to boot, e.g. 6.1.0-57-amd64 (or use --from-plan)")
				}
				req.Release = releases[0]
				if req.Version == "" {
					return errors.New("--version is required: the package version to install, e.g. 6.1.192-3")
				}
				sel, err := api.ParseLabels(selector)
				if err != nil {
					return fmt.Errorf("--selector: %w", err)
				}
				req.Selector = sel
				if deadline != "" {
					if !req.Emergency {
						return errors.New("--deadline is for emergency rollouts: add --emergency")
					}
					t, err := time.Parse(time.RFC3339, deadline)
					if err != nil {
						return fmt.Errorf("--deadline %q: want RFC 3339, e.g. 2026-12-04T18:00:00Z", deadline)
					}
					req.Deadline = &t
				}
				reqs = append(reqs, req)
			}
			var out []api.KernelRollout
			for _, rq := range reqs {
				r, err := admin(sf, func(c *api.Client) (*api.KernelRollout, error) { return c.CreateKernelRollout(cmd.Context(), rq) })
				if err != nil {
					if len(out) > 0 {
						printKernelRollouts(env.Stderr, out)
						return fmt.Errorf("%w (the rollouts above were started)", err)
					}
					return err
				}
				out = append(out, *r)
			}
			if asJSON {
				return writeJSON(env.Stdout, out)
			}
			printKernelRollouts(env.Stdout, out)
			return nil
		},
	}
	c.Flags().StringSliceVar(&releases, "release", nil, "kernel release to boot, e.g. 6.1.0-57-amd64; with --from-plan VERSION=RELEASE (repeatable)")
	c.Flags().StringVar(&req.Version, "version", "", "package version to install, e.g. 6.1.192-3")
	c.Flags().StringSliceVar(&req.Packages, "package", nil, "packages to install at --version (default linux-image-RELEASE; repeatable)")
	c.Flags().StringSliceVar(&selector, "selector", nil, "hosts with this label, k=v (repeatable)")
	c.Flags().StringSliceVar(&req.Hosts, "host", nil, "only these hosts, by id or hostname (repeatable)")
	c.Flags().BoolVar(&req.Emergency, "emergency", false, "reboot outside the window when the deadline comes first (within the budget)")
	c.Flags().StringVar(&deadline, "deadline", "", "with --emergency: the time the reboot must happen by (RFC 3339)")
	c.Flags().StringVar(&req.Reason, "reason", "", "why: CVEs, the rule (shown to operators and agents, audited)")
	c.Flags().StringVar(&fromPlan, "from-plan", "", "start the rollouts a saved stent plan --json asks for")
	jsonFlag(c, &asJSON)
	return c
}

// kernelRolloutsFromPlan turns a plan's kernel actions into rollout
// requests: one per (package family, release, version, emergency), for the
// plan's hosts that are enrolled. releases maps an upgrade's package
// version to the kernel release it installs ("6.1.192-1=6.1.0-57-amd64";
// a bare release applies to every version). Hosts that cannot be rolled
// out are named in warnings; a version without a release is an error.
func kernelRolloutsFromPlan(fp *policy.FleetPlan, releases []string, enrolled map[string]bool) ([]api.KernelRolloutRequest, []string, error) {
	byVersion := map[string]string{}
	for _, r := range releases {
		v, rel, ok := strings.Cut(r, "=")
		if !ok {
			v, rel = "", r
		}
		byVersion[v] = rel
	}
	type group struct {
		req   api.KernelRolloutRequest
		cves  map[string]bool
		rules map[string]bool
	}
	groups := map[string]*group{}
	var order []string
	var warnings []string
	var missing []string
	for _, h := range fp.Hosts {
		var up, rb *policy.Action
		for i := range h.Actions {
			a := &h.Actions[i]
			switch a.Kind {
			case policy.ActUpgrade, policy.ActUpgradeUrgent:
				if up == nil {
					up = a
				}
			case policy.ActReboot, policy.ActEmergencyReboot:
				if rb == nil {
					rb = a
				}
			}
		}
		if up == nil && rb == nil {
			continue
		}
		if !enrolled[h.Hostname] {
			warnings = append(warnings, fmt.Sprintf("%s: not enrolled on the server (or revoked); left out", h.Hostname))
			continue
		}
		rpm := isRPMDistro(h.Distro)
		emergency := (rb != nil && rb.Kind == policy.ActEmergencyReboot) || (up != nil && up.Kind == policy.ActUpgradeUrgent)
		var release, version string
		var pkgs []string
		switch {
		case up != nil:
			version = up.Version
			release = byVersion[version]
			if release == "" {
				release = byVersion[""]
			}
			if release == "" {
				missing = append(missing, fmt.Sprintf("%s %s (%s)", up.Package, version, h.Hostname))
				continue
			}
			if rpm {
				pkgs = []string{up.Package}
			} else {
				pkgs = []string{"linux-image-" + release, up.Package}
			}
		case !strings.ContainsAny(rb.Kernel, " \t"):
			release = rb.Kernel
			if rpm {
				pkgs = []string{"kernel-core-" + release}
			}
		default:
			warnings = append(warnings, fmt.Sprintf("%s: the plan's reboot target %q names no kernel release; left out", h.Hostname, rb.Kernel))
			continue
		}
		key := fmt.Sprintf("%v|%s|%s|%v", rpm, release, version, emergency)
		g := groups[key]
		if g == nil {
			g = &group{req: api.KernelRolloutRequest{Release: release, Version: version, Packages: pkgs, Emergency: emergency}, cves: map[string]bool{}, rules: map[string]bool{}}
			groups[key] = g
			order = append(order, key)
		}
		g.req.Hosts = append(g.req.Hosts, h.Hostname)
		for _, a := range []*policy.Action{up, rb} {
			if a == nil {
				continue
			}
			for _, c := range a.CVEs {
				g.cves[c] = true
			}
			for _, r := range a.Rules {
				g.rules[r] = true
			}
			if emergency && a.Deadline != nil && (g.req.Deadline == nil || a.Deadline.Before(*g.req.Deadline)) {
				d := a.Deadline.UTC()
				g.req.Deadline = &d
			}
		}
	}
	if len(missing) > 0 {
		return nil, warnings, fmt.Errorf("--from-plan: the plan upgrades %s, and cannot know the kernel release a package version installs: name it with --release VERSION=RELEASE, e.g. --release %s=6.1.0-57-amd64",
			strings.Join(missing, ", "), strings.Fields(missing[0])[1])
	}
	out := make([]api.KernelRolloutRequest, 0, len(order))
	for _, key := range order {
		g := groups[key]
		cves, rules := sortedKeys(g.cves), sortedKeys(g.rules)
		reason := fmt.Sprintf("stent plan of %s: %d CVEs", fp.GeneratedAt.UTC().Format(time.RFC3339), len(cves))
		if len(cves) > 0 {
			reason += ": " + strings.Join(cves, ", ")
		}
		if len(rules) > 0 {
			reason += " (rules " + strings.Join(rules, ", ") + ")"
		}
		if len(reason) > 4000 {
			reason = reason[:3996] + " ..."
		}
		g.req.Reason = reason
		out = append(out, g.req)
	}
	return out, warnings, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// isRPMDistro tells RHEL-family distributions (dnf, kernel-core packages)
// from Debian-family ones by the plan's distro name.
func isRPMDistro(distro string) bool {
	d := strings.ToLower(distro)
	for _, n := range []string{"rhel", "red hat", "alma", "rocky", "centos", "fedora", "oracle", "amzn", "amazon"} {
		if strings.Contains(d, n) {
			return true
		}
	}
	return false
}

func fleetKernelActionCmd(env *Env, sf *serverFlags, action string) *cobra.Command {
	var reason string
	var asJSON bool
	short := map[string]string{
		"pause":  "Pause a kernel rollout: no further leases for it until resumed",
		"resume": "Resume a paused or halted kernel rollout",
		"cancel": "Cancel a kernel rollout: its hosts are no longer told to install or reboot",
	}[action]
	c := &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := admin(sf, func(c *api.Client) (*api.KernelRollout, error) {
				return c.KernelRolloutAction(cmd.Context(), args[0], action, api.RolloutActionRequest{Reason: reason})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, r)
			}
			printKernelRollouts(env.Stdout, []api.KernelRollout{*r})
			return nil
		},
	}
	reasonFlag(c, &reason)
	jsonFlag(c, &asJSON)
	return c
}
