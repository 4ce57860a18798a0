package pkgmgr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/atomicfile"
)

// Where the kernel state and the operator's pins live on a host.
const (
	StateFile = "/var/lib/stent/kernel.json"
	PinsFile  = "/etc/stent/kernel-pins"
)

// State is what Stent remembers about this host's kernels across boots.
type State struct {
	// KnownGood is the last release that booted and was judged healthy;
	// cleanup never removes it and a failed boot falls back to it.
	KnownGood   string    `json:"known_good,omitempty"`
	KnownGoodAt time.Time `json:"known_good_at,omitzero"`
}

// LoadState reads the state file at path; a missing file is the zero State.
func LoadState(path string) (State, error) {
	var s State
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("kernel state: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("kernel state %s: %w (remove the file to start over; the known-good kernel is then unknown)", path, err)
	}
	return s, nil
}

// SaveState writes s to path atomically.
func SaveState(path string, s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

// LoadPins reads the pins file: one kernel release per line, # comments.
// A missing file is no pins.
func LoadPins(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kernel pins: %w", err)
	}
	var pins []string
	for _, l := range parseLines(data) {
		if strings.ContainsAny(l, " \t/") {
			return nil, fmt.Errorf("kernel pins %s: %q: want one kernel release per line, such as 6.1.0-56-amd64", path, l)
		}
		pins = append(pins, l)
	}
	return pins, nil
}
