package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzStateFiles: whatever is in the agent's credentials and state files
// (a crash mid-write elsewhere, a hand edit), loading them never panics,
// and what loads saves and loads again.
func FuzzStateFiles(f *testing.F) {
	f.Add([]byte(`{"server":"https://ctl:8443","host_id":"h_1","credential":"sth_x","fingerprint":"sha256:00","enrolled_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"ops":{"apply/r_1/x":{"action":"apply","rollout":"r_1","name":"x","state":"done"}}}`))
	f.Add([]byte(`{"ops":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, credentialsFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if c, err := LoadCredentials(dir); err == nil {
			if err := SaveCredentials(dir, c); err != nil {
				t.Fatalf("SaveCredentials(loaded) = %v", err)
			}
			if _, err := LoadCredentials(dir); err != nil {
				t.Fatalf("LoadCredentials(saved) = %v", err)
			}
		}
		fs := FileState{Path: filepath.Join(dir, "state.json")}
		if err := os.WriteFile(fs.Path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := fs.Load(); err == nil {
			if s.Ops == nil {
				t.Fatal("Load gave nil Ops")
			}
			if err := fs.Save(s); err != nil {
				t.Fatalf("Save(loaded) = %v", err)
			}
			if _, err := fs.Load(); err != nil {
				t.Fatalf("Load(saved) = %v", err)
			}
		}
	})
}
