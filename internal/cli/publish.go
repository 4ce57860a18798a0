package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func init() { addCommand(newPublishCmd) }

func newPublishCmd(env *Env) *cobra.Command {
	sf := &serverFlags{}
	var req api.RolloutRequest
	var selector []string
	var noRollout, wait, asJSON bool
	var timeout time.Duration
	var maxFail float64
	cmd := &cobra.Command{
		Use:   "publish BUNDLE",
		Short: "Publish a signed bundle to stent-server and roll it out in waves",
		Long: `Upload a signed bundle to the server and start a staged rollout to the hosts
of a channel (and, with --selector, only those with the given labels) whose
kernel the bundle is for: canary hosts first (those labelled canary=true,
then others), then waves by percentage, each wave released only when the
previous one's hosts reported success and checked in healthy. The rollout
halts by itself when more than --max-failure-pct of the released hosts fail.

With --wait the command follows the rollout and exits 0 when it completes,
3 when it halts and 1 on timeout. It exits 4 when the admin token's role
may not publish (an operator or admin token is needed), 1 on other errors.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if req.Selector, err = api.ParseLabels(selector); err != nil {
				return err
			}
			info, err := admin(sf, func(c *api.Client) (*api.BundleInfo, error) { return c.PublishBundle(cmd.Context(), data) })
			if err != nil {
				return fmt.Errorf("publish %s: %w", args[0], err)
			}
			out := struct {
				Bundle  api.BundleInfo `json:"bundle"`
				Rollout *api.Rollout   `json:"rollout,omitempty"`
			}{Bundle: *info}
			if !asJSON {
				fmt.Fprintf(env.Stdout, "published %s level %d for %s: sha256 %s\n", info.Name, info.Level, info.KernelRelease, info.SHA256)
			}
			if noRollout {
				if asJSON {
					return writeJSON(env.Stdout, out)
				}
				return nil
			}
			req.Bundle = info.SHA256
			if cmd.Flags().Changed("max-failure-pct") {
				req.MaxFailurePct = &maxFail // 0 too: halt on the first failure
			}
			r, err := admin(sf, func(c *api.Client) (*api.Rollout, error) { return c.CreateRollout(cmd.Context(), req) })
			if err != nil {
				return fmt.Errorf("start rollout: %w", err)
			}
			if !asJSON {
				fmt.Fprintf(env.Stdout, "rollout %s: %d hosts in channel %s, canary %d then waves %v\n", r.ID, r.Counts.Target, r.Channel, r.Canary, r.Waves)
			}
			if wait {
				fr, err := followRollout(cmd.Context(), env, sf, r.ID, timeout, !asJSON)
				if fr != nil {
					r = fr
				}
				out.Rollout = r
				if asJSON {
					writeJSON(env.Stdout, out)
				}
				return err
			}
			out.Rollout = r
			if asJSON {
				return writeJSON(env.Stdout, out)
			}
			return nil
		},
	}
	sf.bind(cmd.Flags())
	cmd.Flags().StringVar(&req.Channel, "channel", "stable", "channel whose hosts get the patch")
	cmd.Flags().StringArrayVar(&selector, "selector", nil, "only hosts with this label key=value (repeatable)")
	cmd.Flags().IntVar(&req.Canary, "canary", 0, "hosts in the canary wave (0: 1% of the target, at least 1)")
	cmd.Flags().IntSliceVar(&req.Waves, "waves", nil, "cumulative percentages after the canary, ending at 100 (default 10,50,100)")
	cmd.Flags().Float64Var(&maxFail, "max-failure-pct", 5, "halt when more than this % of released hosts fail (0: on the first failure)")
	cmd.Flags().BoolVar(&noRollout, "no-rollout", false, "only upload the bundle")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the rollout until it completes or halts")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "with --wait, give up after this long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the bundle and rollout as JSON")
	return cmd
}

var errHalted = errors.New("rollout halted")

// followRollout polls a rollout until it completes or stops, printing a
// line whenever its progress changes.
func followRollout(ctx context.Context, env *Env, sf *serverFlags, id string, timeout time.Duration, show bool) (*api.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	last := ""
	for {
		r, err := admin(sf, func(c *api.Client) (*api.Rollout, error) { return c.Rollout(ctx, id, false) })
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("rollout %s: still %s after %v", id, last, timeout)
			}
			return nil, err
		}
		line := fmt.Sprintf("%s, wave %s: %d/%d applied, %d healthy, %d failed", r.State, waveName(*r), r.Counts.Applied, r.Counts.Target, r.Counts.Healthy, r.Counts.Failed)
		if show && line != last {
			fmt.Fprintf(env.Stdout, "%7.1fs  %s\n", time.Since(start).Seconds(), line)
		}
		last = line
		switch r.State {
		case api.RolloutCompleted, api.RolloutReverted:
			return r, nil
		case api.RolloutHalted:
			return r, withCode(3, fmt.Errorf("%w: %s", errHalted, r.Reason))
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("rollout %s: still %s after %v", id, r.State, timeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
