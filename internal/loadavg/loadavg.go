// Package loadavg reads the machine's load averages, which Stent's
// benchmarks print beside their figures: on a shared machine the figures
// move with other work.
package loadavg

import (
	"os"
	"strings"
)

// String returns the 1, 5 and 15 minute load averages of /proc/loadavg,
// space-separated ("1.44 2.44 4.54"), or "?" where they cannot be read.
func String() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
