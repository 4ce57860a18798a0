package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Config is stent-server's configuration. Every field is a flag; a flag not
// given on the command line is taken from the environment
// (STENT_SERVER_<FLAG>, dashes as underscores) and then from the
// configuration file (one "flag = value" a line).
type Config struct {
	Listen          string        // HTTPS address
	MetricsListen   string        // optional plain-HTTP address serving /metrics and /debug/pprof
	DataDir         string        // database, TLS certificate, bootstrap token
	DB              string        // postgres:// DSN; empty: SQLite in DataDir
	TLSCert         string        // PEM certificate; empty: self-signed in DataDir
	TLSKey          string        // PEM key for TLSCert
	TLSNames        []string      // extra DNS names and IPs of the self-signed certificate
	KeysDir         string        // publishing refuses bundles not signed by a key in this folder
	AcceptAnySigner bool          // without KeysDir: publish bundles whatever key signed them
	CheckinInterval time.Duration // longest time agents wait between check-ins
	EngineTick      time.Duration // how often rollouts are re-evaluated besides on events
	LogLevel        string
	LogFormat       string // "text" or "json"
	MaxBundleSize   int64
	BodyTimeout     time.Duration // time allowed to send a request body (not a flag; default 1m)
}

// DefaultConfig returns the configuration with every default filled.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:8443",
		DataDir:         "/var/lib/stent-server",
		CheckinInterval: 60 * time.Second,
		EngineTick:      time.Second,
		LogLevel:        "info",
		LogFormat:       "text",
		MaxBundleSize:   96 << 20,
	}
}

// BindFlags registers c's fields on fs, with c's values as defaults.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTPS listen address (use :8443 to serve the network)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "optional plain-HTTP address serving /metrics and /debug/pprof (keep it private)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "folder for the SQLite database, the TLS certificate and the bootstrap admin token")
	fs.StringVar(&c.DB, "db", c.DB, "PostgreSQL DSN (postgres://...); empty: SQLite file in --data-dir")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate; empty: a self-signed one generated in --data-dir")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringSliceVar(&c.TLSNames, "tls-name", c.TLSNames, "extra DNS name or IP for the self-signed certificate (repeatable)")
	fs.StringVar(&c.KeysDir, "keys-dir", c.KeysDir, "folder of the trusted publisher keys (*.pub): publishing refuses bundles not signed by one of them; required unless --accept-any-signer")
	fs.BoolVar(&c.AcceptAnySigner, "accept-any-signer", c.AcceptAnySigner, "publish bundles whatever key signed them, instead of --keys-dir (hosts still verify against their own keys)")
	fs.DurationVar(&c.CheckinInterval, "checkin-interval", c.CheckinInterval, "longest interval between agent check-ins (agents long-poll this long)")
	fs.DurationVar(&c.EngineTick, "engine-tick", c.EngineTick, "how often rollouts are re-evaluated besides on reports")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.Int64Var(&c.MaxBundleSize, "max-bundle-size", c.MaxBundleSize, "largest bundle accepted for publishing, in bytes")
}

// ApplyEnvAndFile fills the flags of fs that were not set on the command
// line from the environment (prefix + flag name upper-cased, dashes as
// underscores) and then from the file at path (skipped when path is
// empty). Unknown keys in the file are errors, so typos do not pass silently.
func ApplyEnvAndFile(fs *pflag.FlagSet, prefix, path string) error {
	fromFile := map[string]string{}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
			if !ok || k == "" {
				return fmt.Errorf("%s:%d: want \"flag = value\"", path, n)
			}
			if fs.Lookup(k) == nil {
				return fmt.Errorf("%s:%d: unknown setting %q (settings are the flag names)", path, n, k)
			}
			fromFile[k] = v
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		env := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(env)
		src := env
		if !ok {
			v, ok = fromFile[f.Name]
			src = path
		}
		if ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %s: %w", src, f.Name, e)
			}
		}
	})
	return err
}

func (c *Config) dbDSN() string {
	if c.DB != "" {
		return c.DB
	}
	return filepath.Join(c.DataDir, "stent.db")
}
