package inventory

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: Decode never panics, and what it accepts it accepts again
// after a round trip through JSON.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{"collect/testdata/debian-host.golden.json", "collect/testdata/alma-host.golden.json", "../policy/testdata/fleet/web2.json"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"schema_version":1}`))
	f.Add([]byte(`{"inventory":123}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Decode("fuzz.json", bytes.NewReader(data))
		if err != nil {
			return
		}
		b, err := json.Marshal(inv)
		if err != nil {
			t.Fatalf("Marshal(decoded) = %v", err)
		}
		if _, err := Decode(filepath.Join("again", "fuzz.json"), bytes.NewReader(b)); err != nil {
			t.Fatalf("Decode(Marshal(Decode(%q))) = %v", data, err)
		}
	})
}
