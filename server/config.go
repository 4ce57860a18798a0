package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	// Feeds are the vulnerability feeds kept for planning, "KIND=PATH" or
	// "KIND=https://URL" as stent plan --feed takes them (see feeds.go).
	Feeds        []string
	FeedInterval time.Duration // how often every feed is refreshed
	FeedCacheDir string        // downloaded feeds; empty: <data-dir>/feeds
	// SessionTTL bounds a web dashboard session (server/web).
	SessionTTL time.Duration
	// ExposureInterval is the least time between two snapshots of the
	// fleet's exposure (taken when the live plan changed);
	// ExposureRetention how long they are kept (exposure.go).
	ExposureInterval  time.Duration
	ExposureRetention time.Duration
	// MemoryLimit is the Go runtime's soft memory limit, such as "900MiB"
	// (ParseMemoryLimit; empty: none, GOMEMLIMIT applies). The process
	// applies it (debug.SetMemoryLimit), not Server.
	MemoryLimit string
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
		FeedInterval:    time.Hour,
		SessionTTL:      8 * time.Hour,

		ExposureInterval:  15 * time.Minute,
		ExposureRetention: 400 * 24 * time.Hour,
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
	fs.StringArrayVar(&c.Feeds, "feed", c.Feeds, "vulnerability feed to keep current for planning, KIND=PATH or KIND=https://URL as stent plan --feed takes it (KIND debian-changelog, cna, osv, nvd or livepatch); repeatable, one per line in the config file")
	fs.DurationVar(&c.FeedInterval, "feed-interval", c.FeedInterval, "how often every --feed is refreshed (revalidated with ETag / Last-Modified)")
	fs.StringVar(&c.FeedCacheDir, "feed-cache-dir", c.FeedCacheDir, "folder for downloaded feeds; empty: <data-dir>/feeds")
	fs.DurationVar(&c.SessionTTL, "ui-session-ttl", c.SessionTTL, "how long a web dashboard login (/ui/) lasts at most; it also ends when its token expires or is revoked")
	fs.DurationVar(&c.ExposureInterval, "exposure-interval", c.ExposureInterval, "least time between two snapshots of the fleet's exposure (hosts exposed and past a deadline, open CVEs by severity), taken when the live plan changed")
	fs.DurationVar(&c.ExposureRetention, "exposure-retention", c.ExposureRetention, "how long exposure snapshots are kept")
	fs.StringVar(&c.MemoryLimit, "memory-limit", c.MemoryLimit, "soft limit of the server's memory, such as 900MiB or 2GiB: near it the Go runtime collects garbage more often instead of growing (debug.SetMemoryLimit); empty: none (GOMEMLIMIT applies)")
}

// ParseMemoryLimit reads a --memory-limit: a number of bytes, or a number
// with the unit KiB, MiB or GiB.
func ParseMemoryLimit(s string) (int64, error) {
	num, mul := s, int64(1)
	for _, u := range []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mul = n, u.mul
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mul {
		return 0, fmt.Errorf("--memory-limit %q: want a size such as 900MiB or 2GiB (units KiB, MiB, GiB; a plain number is bytes)", s)
	}
	return n * mul, nil
}

// ApplyEnvAndFile fills the flags of fs that were not set on the command
// line from the environment (prefix + flag name upper-cased, dashes as
// underscores) and then from the file at path (skipped when path is
// empty). Unknown keys in the file are errors, so typos do not pass silently.
func ApplyEnvAndFile(fs *pflag.FlagSet, prefix, path string) error {
	fromFile := map[string][]string{}
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
			fl := fs.Lookup(k)
			if fl == nil {
				return fmt.Errorf("%s:%d: unknown setting %q (settings are the flag names)", path, n, k)
			}
			if repeatable(fl) {
				fromFile[k] = append(fromFile[k], v)
			} else {
				fromFile[k] = []string{v} // the last one counts
			}
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
		vs, src := []string{v}, env
		if !ok {
			vs, ok = fromFile[f.Name]
			src = path
		}
		if ok {
			for _, v := range vs {
				if e := fs.Set(f.Name, v); e != nil {
					err = fmt.Errorf("%s: %s: %w", src, f.Name, e)
					return
				}
			}
		}
	})
	return err
}

// repeatable tells a flag that takes a value per use (--feed): the config
// file may then give it on several lines.
func repeatable(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Array") || strings.HasSuffix(t, "Slice")
}

func (c *Config) dbDSN() string {
	if c.DB != "" {
		return c.DB
	}
	return filepath.Join(c.DataDir, "stent.db")
}
