package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

// FuzzConfigFile: the server's --config file never panics the reader.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte("# comment\nlisten = :8443\nkeys-dir = \"/etc/stent-server/keys\"\ntls-name = a,b\n"))
	f.Add([]byte("checkin-interval = 30s\nmax-bundle-size = 1024\naccept-any-signer = true\n"))
	f.Add([]byte("listen\n"))
	f.Add([]byte("= x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "server.conf")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c := DefaultConfig()
		fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
		c.BindFlags(fs)
		ApplyEnvAndFile(fs, "STENT_FUZZ_UNSET_", file)
	})
}
