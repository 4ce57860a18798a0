package hostcli

import (
	"context"
	"fmt"
	"testing"
)

func TestInterrupted(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{context.Canceled, "stent: interrupted"},
		{fmt.Errorf("live patch lp: interrupted during its transition; reverted and unloaded: %w", context.Canceled),
			"stent: interrupted: live patch lp: interrupted during its transition; reverted and unloaded"},
	}
	for _, tt := range tests {
		if got := interrupted(tt.err); got != tt.want {
			t.Errorf("interrupted(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
