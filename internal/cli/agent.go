package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/inventory/collect"
	"github.com/stent-dev/stent/klp"
	"github.com/stent-dev/stent/watchdog"
)

func init() { addCommand(newAgentCmd) }

func agentDir(e *Env) string { return filepath.Join(e.StateDir, "agent") }

func newAgentCmd(env *Env) *cobra.Command {
	var server, token, fingerprint, caFile, metricsListen, logLevel, logFormat string
	var labels []string
	var enrollOnly, kernelUpdates, replace bool
	var healthDelay, busyTimeout, hookTimeout, bootWatchdog time.Duration
	var hooksDir, promURL, promQuery string
	var noRebootFiles []string
	var keepKernels int
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the fleet agent: enroll with stent-server, then keep this host's live patches as the server wants",
		Long: `Run the agent daemon. The first run enrolls the host:

  stent agent --server https://SERVER:8443 --enroll TOKEN --fingerprint sha256:...

which stores the host's credential in <state-dir>/agent/credentials.json (mode
0600); later runs (the stent-agent systemd unit) need no flags. The host's
channel and labels are the enrollment token's. To enroll an enrolled host
again (another token, a new channel), add --replace: its current credential
proves it is the same host, and the server revokes the old enrollment. A
host that lost its credential is re-enrolled after an operator revokes its
old enrollment (stent fleet revoke-host). The agent
reports the kernel, its live patches and the host inventory, holds a long-poll
open so the server can wake it the moment a rollout reaches this host,
downloads bundles (resuming broken downloads), checks their hash and verifies
their signature against the keys in --keys-dir before anything is loaded,
applies and reverts through the runtime (persisted, so patches come back at
boot without the server), and reports each result exactly once. When the
server is unreachable it keeps the host as it is and retries with backoff.

With --kernel-updates the server may also install a new kernel on this host
(through apt or dnf) and reboot it into that kernel in the host's maintenance
window, under a lease that keeps the group's reboot budget. The first boot
into a new kernel is a one-shot boot: a kernel that panics (panic= is set on
the kernel command line), hangs or comes up without a healthy agent leaves the
old kernel the default, the host comes back on it by itself, and the agent
reports the fallback. A hang is caught by the watchdog: the first boot of
the new kernel arms /dev/watchdog (stent-boot-watchdog.service; softdog when
the machine has no hardware watchdog) for --boot-watchdog, and only the
agent's verdict stops it. Before a reboot the agent runs the executables in
<hooks-dir>/pre-reboot.d (in name order; a non-zero exit postpones the reboot)
and waits while a --no-reboot-file exists or the --prometheus-query returns
any series; after the boot, <hooks-dir>/post-reboot.d and the health check
decide whether the new kernel is kept (made the default, old kernels cleaned
up down to --keep-kernels).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := agentLogger(env, logLevel, logFormat)
			if err != nil {
				return err
			}
			if busyTimeout <= 0 {
				return fmt.Errorf("--busy-timeout %s: want a positive duration, such as 10m", busyTimeout)
			}
			if keepKernels < 2 {
				return fmt.Errorf("--keep-kernels %d: keep at least 2 (the running kernel and a fallback)", keepKernels)
			}
			if need := healthDelay + hookTimeout + time.Minute; kernelUpdates && bootWatchdog != 0 && bootWatchdog < need {
				return fmt.Errorf("--boot-watchdog %v: too short to judge a boot (--health-delay %v, then post-reboot hooks, each up to --hook-timeout %v): give at least %v, or 0 to go without",
					bootWatchdog, healthDelay, hookTimeout, need)
			}
			if (promURL == "") != (promQuery == "") {
				return errors.New("--prometheus-url and --prometheus-query go together")
			}
			dir := agentDir(env)
			creds, err := agent.LoadCredentials(dir)
			switch {
			case err == nil && token != "" && !replace:
				return fmt.Errorf("this host is already enrolled as %s with %s; add --replace to enroll again in its place", creds.HostID, creds.Server)
			case (err == nil && replace || errors.Is(err, agent.ErrNotEnrolled)) && token != "":
				old := ""
				if creds != nil {
					old = creds.Credential
				}
				if server == "" {
					return errors.New("--enroll needs --server https://SERVER:8443")
				}
				lm, err := api.ParseLabels(labels)
				if err != nil {
					return err
				}
				host, _ := os.Hostname()
				mid, _ := os.ReadFile(filepath.Join(env.Root, "etc", "machine-id"))
				creds, err = agent.EnrollWith(ctx, nil, server, api.TLSOptions{Fingerprint: fingerprint, CAFile: caFile},
					api.EnrollRequest{Token: token, Hostname: host, MachineID: strings.TrimSpace(string(mid)), Labels: lm, Replaces: old})
				if err != nil {
					return err
				}
				if err := agent.SaveCredentials(dir, creds); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "enrolled as %s (channel %s) with %s\n", creds.HostID, creds.Channel, creds.Server)
			case err != nil:
				return err
			}
			if enrollOnly {
				return nil
			}
			keys, err := bundle.LoadKeyring(env.KeysDir)
			if err != nil {
				return fmt.Errorf("trusted keys: %w", err)
			}
			if keys.Len() == 0 {
				log.Warn("no trusted keys: every bundle will be refused", "keys_dir", env.KeysDir)
			}
			var met *agent.Metrics
			if metricsListen != "" {
				reg := prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
				met = agent.NewMetrics(reg)
				ln, err := net.Listen("tcp", metricsListen)
				if err != nil {
					return fmt.Errorf("metrics: %w", err)
				}
				msrv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
				go msrv.Serve(ln)
				defer msrv.Close()
			}
			var km agent.KernelManager
			if kernelUpdates {
				hk, err := agent.NewHostKernels(env.Root)
				if err != nil {
					return fmt.Errorf("--kernel-updates: %w", err)
				}
				if agent.UnderSystemd() {
					hk.Pkg.Runner = agent.SystemdRunner{}
					hk.Boot.Runner = agent.SystemdRunner{}
				}
				// The kernel state stent kernel writes: in --state-dir,
				// which is not under --root.
				hk.StateFile = kernelStatePath(env)
				hk.Keep = keepKernels
				hk.BootWatchdog = bootWatchdog
				hk.Watchdog = watchdog.Files{StateDir: env.StateDir, RunDir: env.RunDir, Device: filepath.Join(env.Root, "dev/watchdog")}
				km = hk
			}
			rt := env.Runtime()
			a, err := agent.New(agent.Config{
				Runtime:     agent.PatcherRuntime{RT: rt},
				Verifier:    agent.KeyringVerifier{Keys: keys},
				Dir:         dir,
				Log:         log,
				Metrics:     met,
				HealthDelay: healthDelay,
				BusyTimeout: busyTimeout,
				Inventory:   inventoryFunc(env),
				Kernel:      km,
				Hooks: agent.Hooks{
					PreReboot:       filepath.Join(hooksDir, "pre-reboot.d"),
					PostReboot:      filepath.Join(hooksDir, "post-reboot.d"),
					Timeout:         hookTimeout,
					BlockFiles:      noRebootFiles,
					PrometheusURL:   promURL,
					PrometheusQuery: promQuery,
				},
			}, creds)
			if err != nil {
				return err
			}
			log.Info("agent running", "host", creds.HostID, "server", creds.Server)
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server URL to enroll with, https://SERVER:8443; for an active/standby pair both URLs, comma-separated (the agent uses whichever is active)")
	f.StringVar(&token, "enroll", "", "enrollment token (from stent fleet enroll-token)")
	f.StringVar(&fingerprint, "fingerprint", "", "pin the server certificate, sha256:... (printed by stent-server)")
	f.StringVar(&caFile, "ca-file", "", "trust the server certificate through this CA file instead")
	f.StringArrayVar(&labels, "label", nil, "label key=value the enrollment token must set (repeatable; labels come from the token: enrolling fails when it does not set them)")
	f.BoolVar(&replace, "replace", false, "enroll again in place of this host's current enrollment (its credential is sent to prove it; the old one is revoked)")
	f.BoolVar(&enrollOnly, "enroll-only", false, "enroll and exit")
	f.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9465)")
	f.DurationVar(&healthDelay, "health-delay", 10*time.Second, "wait after an apply before checking health and checking in")
	f.DurationVar(&busyTimeout, "busy-timeout", agent.DefaultBusyTimeout, "report an apply failed once the live patch runtime has been busy this long (another stent operation holds the lock, another patch is in transition); reverts wait for it without a bound")
	f.BoolVar(&kernelUpdates, "kernel-updates", false, "let the server install new kernels on this host and reboot it into them (in its maintenance window, under a reboot lease)")
	f.StringVar(&hooksDir, "hooks-dir", "/etc/stent", "folder of pre-reboot.d/ and post-reboot.d/ hooks")
	f.DurationVar(&hookTimeout, "hook-timeout", agent.DefaultHookTimeout, "kill a reboot hook that runs longer than this (a pre-reboot hook killed postpones the reboot)")
	f.StringArrayVar(&noRebootFiles, "no-reboot-file", []string{"/etc/stent/no-reboot", "/run/stent/no-reboot"}, "no reboot while this file exists (repeatable)")
	f.StringVar(&promURL, "prometheus-url", "", "Prometheus to ask before a reboot, e.g. http://prometheus:9090")
	f.StringVar(&promQuery, "prometheus-query", "", "no reboot while this query returns any series, e.g. ALERTS{alertstate=\"firing\",severity=\"critical\"}; an unreachable Prometheus blocks too")
	f.DurationVar(&bootWatchdog, "boot-watchdog", watchdog.DefaultTimeout, "with --kernel-updates: the watchdog resets the first boot of a new kernel unless the agent has judged it within this time (a hang falls back like a panic); 0: no watchdog")
	f.IntVar(&keepKernels, "keep-kernels", 3, "kernels kept by the cleanup after a healthy boot into a new one (the running and known-good ones always stay)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	cmd.AddCommand(newAgentStatusCmd(env))
	return cmd
}

func agentLogger(env *Env, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(env.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(env.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// inventoryFunc reports the host inventory, collected at most every 15
// minutes, and at once when what it says of the running kernel changed: a
// live patch loaded, enabled, in transition or removed (by the agent or by
// hand), or another kernel booted. The agent sends it only when it changed,
// so the server's plan sees a live patch as soon as it is applied.
func inventoryFunc(env *Env) func(context.Context) (json.RawMessage, error) {
	var last json.RawMessage
	var at time.Time
	var lastLive string
	return func(ctx context.Context) (json.RawMessage, error) {
		live := liveState(env)
		if !at.IsZero() && time.Since(at) < 15*time.Minute && live == lastLive {
			return last, nil
		}
		at, lastLive = time.Now(), live
		inv, err := collect.Host(ctx, env.Root, env.RunDir, at)
		if err != nil {
			return nil, err // said once; asked again in 15 minutes or when the kernel's state changes
		}
		b, err := json.Marshal(inv)
		if err != nil {
			return nil, err
		}
		last = b
		return b, nil
	}
}

// liveState sums up the running kernel's live patch state, cheaply enough
// for every check-in: the kernel release, and each loaded live patch with
// its enabled and transition flags (klp.List reads a few sysfs files).
func liveState(env *Env) string {
	var b strings.Builder
	rel, _ := os.ReadFile(filepath.Join(env.Root, "proc/sys/kernel/osrelease"))
	b.Write(bytes.TrimSpace(rel))
	ps, err := klp.List(env.Root)
	if err != nil {
		fmt.Fprintf(&b, " (%v)", err)
	}
	for _, p := range ps {
		fmt.Fprintf(&b, " %s:%t:%t", p.Name, p.Enabled, p.Transition)
	}
	return b.String()
}

func newAgentStatusCmd(env *Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the agent's enrollment and what it has done and still has to report",
		Long: `Show the agent's enrollment (server, host id, channel, labels) from
<state-dir>/agent/credentials.json, the actions it has taken or is taking,
and the reports still waiting for the server. It reads the agent's files
only; it does not ask the server.

Exit codes: 0 shown, 1 error, 2 this host is not enrolled (or its
credentials file cannot be read).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := agentDir(env)
			creds, err := agent.LoadCredentials(dir)
			if err != nil {
				return withCode(2, err)
			}
			st, err := agent.FileState{Path: filepath.Join(dir, "state.json")}.Load()
			if err != nil {
				return err
			}
			out := struct {
				Server      string               `json:"server"`
				HostID      string               `json:"host_id"`
				Channel     string               `json:"channel"`
				Labels      map[string]string    `json:"labels,omitempty"`
				EnrolledAt  time.Time            `json:"enrolled_at"`
				Fingerprint string               `json:"fingerprint,omitempty"`
				Ops         map[string]*agent.Op `json:"ops"`
				Pending     []api.Report         `json:"pending_reports"`
				Kernel      agent.KernelState    `json:"kernel"`
			}{creds.Server, creds.HostID, creds.Channel, creds.Labels, creds.EnrolledAt, creds.Fingerprint, st.Ops, st.Pending, st.Kernel}
			if asJSON {
				return writeJSON(env.Stdout, out)
			}
			fmt.Fprintf(env.Stdout, "Enrolled as %s with %s (channel %s) since %s\n", creds.HostID, creds.Server, creds.Channel, creds.EnrolledAt.Format(time.RFC3339))
			for _, op := range st.Ops {
				state := "in progress"
				if op.Done {
					state = op.Result
					if op.Error != "" {
						state += ": " + op.Error
					}
				}
				fmt.Fprintf(env.Stdout, "  %s %s (rollout %s): %s\n", op.Action, op.Name, op.Rollout, state)
			}
			if p := st.Kernel.Boot; p != nil {
				fmt.Fprintf(env.Stdout, "Rebooting from %s into %s (since %s, lease %s)\n", p.From, p.To, p.Started.Format(time.RFC3339), p.Lease)
			}
			if b := st.Kernel.LastBoot; b != nil {
				fmt.Fprintf(env.Stdout, "Last kernel boot: %s -> %s: %s", b.From, b.To, b.Result)
				if b.Reason != "" {
					fmt.Fprintf(env.Stdout, " (%s)", b.Reason)
				}
				fmt.Fprintf(env.Stdout, " at %s\n", b.At.Format(time.RFC3339))
			}
			fmt.Fprintf(env.Stdout, "Reports waiting for the server: %d\n", len(st.Pending))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
