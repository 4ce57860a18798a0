// Command stent-server is the control server of a Stent fleet: it enrolls
// hosts, takes published bundles and rolls them out in waves to the agents
// that hold a long-poll open to it. See docs/server.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/version"
	"github.com/stent-dev/stent/server"
	"github.com/stent-dev/stent/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "stent-server: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := server.DefaultConfig()
	var configFile string
	root := &cobra.Command{
		Use:     "stent-server",
		Version: version.String(),
		Short:   "Stent's control server: enrollment, publishing, staged rollouts and vulnerability feeds for a fleet",
		Long: `stent-server serves the Stent fleet API over HTTPS. State lives in SQLite in
--data-dir unless --db names a PostgreSQL database. On first start it creates a
self-signed certificate (agents pin its fingerprint) and an admin token in
<data-dir>/admin.token.

Publishing takes only bundles signed by a key in --keys-dir (the *.pub files
of "stent key generate"); the server refuses to start without it unless
--accept-any-signer says to take bundles whatever key signed them. Hosts
check signatures against their own /etc/stent/keys in any case.

For planning, it keeps the vulnerability feeds given with --feed (as stent plan
--feed takes them: local paths or https URLs) current every --feed-interval,
revalidating downloads with ETag / Last-Modified; a feed that fails keeps its
last good copy in use. The manifests of the published bundles are a livepatch
feed of their own. "stent fleet feeds" shows how each feed stands.

With SQLite one server owns the data folder; a second one on it fails at
start. With PostgreSQL, run two instances on one database for an
active/standby pair: the one holding the database's advisory lock is active;
the other answers 503 "standby" (on /healthz too) and takes over when the
lock is released. An active instance that loses its lock connection stops
serving and exits with status 1, so its supervisor starts it as the standby.
See docs/server.md.

Every flag can also be set in the environment as STENT_SERVER_<FLAG> (dashes
as underscores) or in the --config file as "flag = value" lines; flags win
over the environment, which wins over the file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				configFile = os.Getenv("STENT_SERVER_CONFIG")
			}
			return server.ApplyEnvAndFile(cmd.Flags(), "STENT_SERVER_", configFile)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return err
			}
			if cfg.MemoryLimit != "" {
				n, err := server.ParseMemoryLimit(cfg.MemoryLimit)
				if err != nil {
					return err
				}
				debug.SetMemoryLimit(n)
			}
			srv, err := server.New(cmd.Context(), cfg, server.Options{Log: log})
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "stent-server: certificate fingerprint %s\n", srv.Fingerprint())
			err = srv.Run(cmd.Context())
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&configFile, "config", "", "configuration file of \"flag = value\" lines (env STENT_SERVER_CONFIG)")
	cfg.BindFlags(root.PersistentFlags())

	var name, role string
	var ttl time.Duration
	tokenCmd := &cobra.Command{Use: "token", Short: "Manage admin tokens directly in the store (for the first operator, or recovery)"}
	tokenCreate := &cobra.Command{
		Use:   "create",
		Short: "Create an admin token and print its secret",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return err
			}
			dsn := cfg.DB
			if dsn == "" {
				dsn = cfg.DataDir + "/stent.db"
			}
			st, err := store.Open(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer st.Close()
			t, err := server.CreateAdminToken(cmd.Context(), st, name, role, ttl, "cli:stent-server token create")
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, t.Secret)
			return nil
		},
	}
	tokenCreate.Flags().StringVar(&name, "name", "operator", "what the token is for")
	tokenCreate.Flags().StringVar(&role, "role", api.RoleOperator, "viewer, operator or admin")
	tokenCreate.Flags().DurationVar(&ttl, "ttl", 0, "expiry (0: never)")
	tokenCmd.AddCommand(tokenCreate)

	fpCmd := &cobra.Command{
		Use:   "fingerprint",
		Short: "Print the fingerprint of the server's certificate (creating it if needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fp, err := server.CertFingerprint(&cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, fp)
			return nil
		},
	}
	root.AddCommand(tokenCmd, fpCmd)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
