package server

import (
	"os"
	"path/filepath"
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
