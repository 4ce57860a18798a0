package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/policy"
)

func init() { addCommand(newReportCmd) }

func newReportCmd(env *Env) *cobra.Command {
	var f planFlags
	var rf reportFlags
	var planFile string
	cmd := &cobra.Command{
		Use:   "report --format json|csv|html {--inventory FILE... --feed KIND=PATH... [--policy FILE] | --plan FILE}",
		Short: "Compliance report per host and fleet-wide: compliant, at risk, breached, excepted",
		Long: `Report compliance with the policy's rules, per host and for the fleet: status
(compliant, at risk, breached, excepted), days exposed, deadline and evidence
(which kernel runs since when, which live patch was applied when, which CVEs
lack their fix). Takes the same inputs as stent plan, or --plan FILE: a plan
saved with "stent plan --json", rendered without reading any feed, as the
same report its inputs would give at the plan's time (--now is the plan's).
Use it to plan where the feeds are and report elsewhere or later, as
evidence. A file that is not such a plan (an inventory, a report, a plan of
an older stent) is refused with its line and column. "stent fleet report"
renders the same report of the plan stent-server keeps.

--format html writes one self-contained page with a chart of exposure by
severity over the last --days days; csv writes one row per host and rule, then
one per rule for the fleet (host "*").

Exit codes: 0 reported; 1 an input could not be read or judged; 2 a usage
error (as for stent plan, a bad --format or --fail-on, --plan given with a
plan flag, or a --plan file that is not a plan); 3 --fail-on matched a host
(the report is written first).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rf.check(); err != nil {
				return err
			}
			var fp *policy.FleetPlan
			var err error
			if planFile != "" {
				fp, err = readPlan(cmd, planFile)
			} else {
				fp, err = f.plan(cmd.Context(), env)
			}
			if err != nil {
				return err
			}
			return rf.write(env, fp)
		},
	}
	f.bind(cmd, env)
	rf.bind(cmd)
	cmd.Flags().StringVar(&planFile, "plan", "", `render a plan saved with "stent plan --json" ("-": standard input) instead of planning from --inventory, --feed and --policy`)
	return cmd
}

// reportFlags are how stent report and stent fleet report render a plan.
type reportFlags struct {
	format, output, failOn string
	days                   int
}

func (rf *reportFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&rf.format, "format", "json", "json, csv or html")
	cmd.Flags().StringVarP(&rf.output, "output", "o", "", "write the report to this file (default: standard output)")
	cmd.Flags().IntVar(&rf.days, "days", 90, "days of history in the exposure chart and series")
	cmd.Flags().StringVar(&rf.failOn, "fail-on", "", "breached or at-risk: exit with code 3 when a host is that or worse")
}

// check refuses a bad --format or --fail-on before any work.
func (rf *reportFlags) check() error {
	switch rf.format {
	case "json", "csv", "html":
	default:
		return withCode(2, fmt.Errorf("--format %q: want json, csv or html", rf.format))
	}
	switch rf.failOn {
	case "", policy.AtRisk, policy.Breached:
	default:
		return withCode(2, fmt.Errorf("--fail-on %q: want at-risk or breached", rf.failOn))
	}
	return nil
}

// write renders fp's report and applies --fail-on.
func (rf *reportFlags) write(env *Env, fp *policy.FleetPlan) error {
	return rf.writeReport(env, policy.BuildReport(fp, rf.days))
}

// writeReport writes rep as the flags say.
func (rf *reportFlags) writeReport(env *Env, rep *policy.Report) error {
	var buf bytes.Buffer
	var err error
	switch rf.format {
	case "json":
		err = rep.WriteJSON(&buf)
	case "csv":
		err = rep.WriteCSV(&buf)
	case "html":
		err = rep.WriteHTML(&buf)
	}
	if err != nil {
		return err
	}
	if rf.output == "" || rf.output == "-" {
		_, err = env.Stdout.Write(buf.Bytes())
	} else {
		err = writeReportFile(rf.output, buf.Bytes())
	}
	if err != nil {
		return err
	}
	if rf.failOn != "" {
		for _, h := range rep.Hosts {
			if h.Status == policy.Breached || (rf.failOn == policy.AtRisk && h.Status == policy.AtRisk) {
				return withCode(3, fmt.Errorf("host %s is %s (--fail-on %s)", h.Hostname, h.Status, rf.failOn))
			}
		}
	}
	return nil
}

// planInputFlags are the flags that make a plan; --plan replaces them all.
var planInputFlags = []string{"inventory", "feed", "policy", "now", "cache-dir", "offline"}

// readPlan reads the saved plan of stent report --plan.
func readPlan(cmd *cobra.Command, path string) (*policy.FleetPlan, error) {
	for _, name := range planInputFlags {
		if cmd.Flags().Changed(name) {
			return nil, withCode(2, fmt.Errorf("--plan %s: --%s cannot be given too: the plan already holds what its inputs said (report from the inputs, or from the plan)", path, name))
		}
	}
	var r io.Reader = cmd.InOrStdin()
	name := "standard input"
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r, name = fh, path
	}
	fp, err := policy.DecodePlan(name, r)
	if errors.Is(err, policy.ErrNotPlan) {
		return nil, withCode(2, err)
	}
	return fp, err
}

// writeReportFile writes data atomically.
func writeReportFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".report-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
