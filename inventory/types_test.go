package inventory

import (
	"strings"
	"testing"
)

func TestDecodeRefusesOtherSchemas(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"hostname":"a"}`, "schema_version: missing required field"},
		{`{"schema_version":2}`, "schema_version 2, this stent reads 1"},
		{`{"schema_version":1,"hostname":"a","surprise":1}`, `unknown field "surprise"`},
		{`{"schema_version":1,"hostname":"a","os":{"id":"debian","family":"deb"},"kernel":{"release":"x","boot_time":"2026-01-01T00:00:00Z"}}`, "kernel.package_version: missing required field"},
	} {
		if _, err := Decode("in.json", strings.NewReader(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s) = %v, want %q", tt.in, err, tt.want)
		}
	}
}
