package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.conf")
	os.WriteFile(file, []byte(`# comment
listen = 127.0.0.1:9000
data-dir = "/srv/stent"
checkin-interval = 30s
log-level = debug
`), 0o644)
	t.Setenv("STENT_SERVER_CHECKIN_INTERVAL", "45s")
	t.Setenv("STENT_SERVER_LOG_LEVEL", "warn")
	c := DefaultConfig()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse([]string{"--log-level", "error"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnvAndFile(fs, "STENT_SERVER_", file); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ field, got, want string }{
		{"listen (file)", c.Listen, "127.0.0.1:9000"},
		{"data-dir (file, quoted)", c.DataDir, "/srv/stent"},
		{"checkin-interval (env over file)", c.CheckinInterval.String(), (45 * time.Second).String()},
		{"log-level (flag over env)", c.LogLevel, "error"},
		{"log-format (default)", c.LogFormat, "text"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.field, tt.got, tt.want)
		}
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, body := range []string{"no-such-flag = 1\n", "listen\n", "checkin-interval = soon\n"} {
		file := filepath.Join(t.TempDir(), "server.conf")
		os.WriteFile(file, []byte(body), 0o644)
		c := DefaultConfig()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.BindFlags(fs)
		if err := ApplyEnvAndFile(fs, "STENT_SERVER_", file); err == nil {
			t.Errorf("ApplyEnvAndFile(%q) = nil, want an error", body)
		}
	}
}

// --feed is given once per feed, on the command line or on several lines
// of the file; a feed URL's commas and equals signs stay whole.
func TestConfigRepeatedFeed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.conf")
	os.WriteFile(file, []byte(`feed = cna=https://mirror.example/vulns.tar.gz
feed = "nvd=https://services.nvd.nist.gov/rest/json/cves/2.0?keywordSearch=linux,kernel"
feed-interval = 15m
listen = :1
listen = :2
`), 0o644)
	c := DefaultConfig()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnvAndFile(fs, "STENT_SERVER_", file); err != nil {
		t.Fatal(err)
	}
	want := []string{"cna=https://mirror.example/vulns.tar.gz", "nvd=https://services.nvd.nist.gov/rest/json/cves/2.0?keywordSearch=linux,kernel"}
	if len(c.Feeds) != 2 || c.Feeds[0] != want[0] || c.Feeds[1] != want[1] || c.FeedInterval != 15*time.Minute || c.Listen != ":2" {
		t.Errorf("feeds %q, interval %s, listen %s; want %q, 15m0s and the last listen, :2", c.Feeds, c.FeedInterval, c.Listen, want)
	}
	// On the command line, the file's feeds are not added to the flags'.
	c = DefaultConfig()
	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse([]string{"--feed", "osv=/srv/osv"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnvAndFile(fs, "STENT_SERVER_", file); err != nil {
		t.Fatal(err)
	}
	if len(c.Feeds) != 1 || c.Feeds[0] != "osv=/srv/osv" {
		t.Errorf("feeds with --feed given = %q, want only the flag's", c.Feeds)
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"900MiB": 900 << 20, "2GiB": 2 << 30, "512KiB": 512 << 10, "1000000": 1000000, "1 GiB": 1 << 30} {
		if got, err := ParseMemoryLimit(in); err != nil || got != want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MiB", "1GB", "lots", "MiB", "9999999999GiB"} {
		if got, err := ParseMemoryLimit(in); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want an error naming --memory-limit", in, got, err)
		}
	}
}
