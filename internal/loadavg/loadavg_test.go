package loadavg

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		if got := String(); got != "?" {
			t.Errorf("String() without /proc/loadavg = %q, want ?", got)
		}
		return
	}
	f := strings.Fields(String())
	if len(f) != 3 {
		t.Fatalf("String() = %q, want three load averages", String())
	}
	for _, x := range f {
		if _, err := strconv.ParseFloat(x, 64); err != nil {
			t.Errorf("String() field %q is not a number", x)
		}
	}
}
