package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/factory"
)

func factoryRunCmd(env *Env, sf *serverFlags) *cobra.Command {
	var from, to, series, keyFile, check string
	var noSmoke, asJSON bool
	var watch time.Duration
	w := &factory.Worker{}
	c := &cobra.Command{
		Use:   "run [--from OLD] [--to NEW] [--watch INTERVAL]",
		Short: "Build, smoke-test, sign, publish and roll out one cumulative live patch per kernel build the fleet runs",
		Long: `The factory's worker. For upload --to (default: the newest linux-source-<series>
the apt archive carries) over --from (default: the upload before it there):

 1. find its fixes (as stent factory fixes) and record the upload on the
    server;
 2. for every kernel build of the series the server's inventories show
    running at an older upload (e.g. 6.1.0-55-amd64 at 6.1.192-1 and
    6.1.0-56-amd64 at 6.1.192-2): claim its job on the server (another
    worker already building it is left alone), find the fixes between that
    build and --to, and build one cumulative live patch of them with the
    builder, on the newest bundle the server has for that build
    (--cumulative-with). Fixes the builder refuses are recorded with its
    reason (for their CVEs the path is a reboot) and the patch is built of
    the others; a build that fails or fixes that do not apply fail that
    job only, and the worker goes on;
 3. smoke-test the bundle on its exact kernel under QEMU (boot it, load the
    modules it patches, stent apply, --check, stent revert, no oops, BUG or
    WARNING in the kernel log); a bundle that fails is not published.
    This uses Stent's QEMU test harness: run from a Stent checkout with Go,
    qemu-system-x86_64 and busybox-static. --no-smoke skips it, and each
    job then names the step as skipped;
 4. sign it with the factory's key (--key, default
    $XDG_CONFIG_HOME/stent/factory.key, made on first use; not the
    operators' signing.key: hosts trust its .pub in /etc/stent/keys, and
    each job and its audit entry name its key id), publish it, and start
    a rollout to --channel (canary) when the server's policy lists
    apply-livepatch as unattended; otherwise the job waits for an
    operator's approval (the live plan's action, or stent fleet rollout).

The kernel builds are worked on --parallel at a time (default 2, or 1 on a
one-CPU machine): a build compiles its objects one at a time and a smoke
test's guest has one CPU, so two at once keep two cores busy.

Each step's state and time is on the server: stent factory status.
--watch INTERVAL runs again whenever apt-cache shows a new upload (run
apt-get update beside it). The token needs the operator role.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			client, err := sf.client()
			if err != nil {
				return err
			}
			key, pub, msg, err := factoryKey(keyFile)
			if err != nil {
				return err
			}
			if msg != "" {
				fmt.Fprintln(env.Stderr, msg)
			}
			if w.Options.Cache == "" {
				if w.Options.Cache, err = buildCache(); err != nil {
					return err
				}
			}
			w.Client, w.Key, w.Options.Progress = client, key, env.Stderr
			if !noSmoke {
				w.Smoke = func(ctx context.Context, kernel string, b []byte) error {
					return factory.Smoke(ctx, kernel, b, factory.SmokeOptions{PublicKey: pub, Check: check, Progress: env.Stderr})
				}
			}
			last := ""
			for {
				f, t, err := uploads(ctx, series, from, to)
				if err != nil {
					return err
				}
				if t != last {
					rep, err := w.Run(ctx, f, t)
					if rep != nil {
						if asJSON {
							if err := writeJSON(env.Stdout, rep); err != nil {
								return err
							}
						} else {
							printRun(env.Stdout, rep)
						}
					}
					if err != nil {
						if watch == 0 {
							return adminError(sf, err)
						}
						fmt.Fprintf(env.Stderr, "factory: %s: %v\n", t, err)
					}
					last = t
				}
				if watch == 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(watch):
				}
			}
		},
	}
	f := c.Flags()
	f.StringVar(&from, "from", "", "the upload before --to (default: the one before it in the archive)")
	f.StringVar(&to, "to", "", "the upload to make live patches of (default: the archive's newest)")
	f.StringVar(&series, "series", "6.1", "the kernel series whose linux-source packages to watch")
	f.StringVar(&keyFile, "key", "", "the factory's signing key (default $XDG_CONFIG_HOME/stent/factory.key, made on first use)")
	f.StringVar(&w.Channel, "channel", "canary", "the channel the rollout goes to")
	f.StringVar(&w.Options.Git, "git", "", "git repository of the stable kernel for CNA-named stable commits")
	f.StringVar(&w.Options.CNA, "cna", "", "folder of kernel CNA records (cve/published/YEAR/CVE-ID.dyad), with --git")
	f.StringVar(&check, "check", "", "shell script the smoke test runs in the guest with the patch applied")
	f.BoolVar(&noSmoke, "no-smoke", false, "publish without the QEMU smoke test (each job says so)")
	f.DurationVar(&watch, "watch", 0, "keep running: look for a new upload this often")
	f.IntVar(&w.Parallel, "parallel", factory.DefaultParallel, "kernel builds to build and smoke-test at once")
	jsonFlag(c, &asJSON)
	return c
}

// uploads picks the upload pair to work on: the flags, or the archive's
// newest and the one before it.
func uploads(ctx context.Context, series, from, to string) (string, string, error) {
	if from != "" && to != "" {
		return from, to, nil
	}
	vs, err := factory.ArchiveUploads(ctx, series)
	if err != nil {
		return "", "", fmt.Errorf("factory run: %w (or pass --from and --to)", err)
	}
	if to == "" {
		to = vs[0]
	}
	if from == "" {
		for i, v := range vs {
			if v == to && i+1 < len(vs) {
				from = vs[i+1]
			}
		}
		if from == "" {
			return "", "", fmt.Errorf("factory run: the archive has no upload of linux-source-%s before %s: pass --from", series, to)
		}
	}
	return from, to, nil
}

// factoryKey loads the factory's signing key, making the default one on
// first use; it returns the public key file's contents too.
func factoryKey(keyFile string) (ed25519.PrivateKey, []byte, string, error) {
	msg := ""
	if keyFile == "" {
		dir, err := defaultSigningDir()
		if err != nil {
			return nil, nil, "", err
		}
		keyFile = filepath.Join(dir, "factory"+bundle.PrivateKeySuffix)
		if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) {
			kf, err := bundle.GenerateKey(dir, "factory", false)
			if err != nil {
				return nil, nil, "", err
			}
			msg = fmt.Sprintf("factory: made the factory's signing key %s (key id %s); copy %s into the trusted keys folder (/etc/stent/keys) of hosts", kf.Private, kf.ID, kf.Public)
		}
	}
	key, err := bundle.LoadPrivateKey(keyFile)
	if err != nil {
		return nil, nil, "", fmt.Errorf("--key: %w", err)
	}
	pub, err := bundle.EncodePublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, nil, "", err
	}
	return key, pub, msg, nil
}

func printRun(w io.Writer, rep *factory.Report) {
	st := &api.FactoryStatus{Jobs: rep.Jobs}
	if rep.Upload != nil {
		st.Uploads = []api.FactoryUpload{*rep.Upload}
	}
	printFactory(w, st)
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "  skipped %s\n", s)
	}
	if len(rep.Jobs) == 0 && len(rep.Skipped) == 0 {
		fmt.Fprintln(w, "  no kernel build of the fleet runs this series: nothing to build")
	}
}
