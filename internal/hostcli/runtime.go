package hostcli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stent-dev/stent/patcher"
)

// Runtime builds the host runtime from the global flags.
func (e *Env) Runtime() *patcher.Runtime {
	return patcher.New(patcher.Config{Root: e.Root, StateDir: e.StateDir, RunDir: e.RunDir, KeysDir: e.KeysDir, Log: e.Log})
}

// progressPrinter prints runtime events for a person: one line per step,
// transition ticks with the blocking tasks named.
func progressPrinter(w io.Writer, quiet bool) patcher.Progress {
	if quiet {
		return nil
	}
	return func(ev patcher.Event) {
		switch ev.Step {
		case "done":
			// The command prints its own result line.
		case "transition":
			names := make([]string, 0, 3)
			for i, t := range ev.Blockers {
				if i == 3 {
					names = append(names, "...")
					break
				}
				names = append(names, fmt.Sprintf("%s[%d]", t.Comm, t.TID))
			}
			suffix := ""
			if len(names) > 0 {
				suffix = ": " + strings.Join(names, ", ")
			}
			fmt.Fprintf(w, "  %s%s\n", ev.Message, suffix)
		default:
			fmt.Fprintf(w, "%s\n", ev.Message)
		}
	}
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
