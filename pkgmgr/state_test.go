package pkgmgr

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var/lib/stent/kernel.json")
	s, err := LoadState(path)
	if err != nil || s.KnownGood != "" {
		t.Fatalf("LoadState(missing) = %+v, %v", s, err)
	}
	want := State{KnownGood: "6.1.0-57-amd64", KnownGoodAt: time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)}
	if err := SaveState(path, want); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadState(path); err != nil || got != want {
		t.Errorf("LoadState = %+v, %v, want %+v", got, err, want)
	}
	must(t, os.WriteFile(path, []byte("{"), 0o644))
	if _, err := LoadState(path); err == nil {
		t.Error("LoadState(corrupt): no error")
	}
}

func TestLoadPins(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kernel-pins")
	if pins, err := LoadPins(path); err != nil || pins != nil {
		t.Errorf("LoadPins(missing) = %v, %v", pins, err)
	}
	must(t, os.WriteFile(path, []byte("# keep for the RAID driver\n6.1.0-50-amd64\n\n 6.1.0-56-amd64 \n"), 0o644))
	if pins, err := LoadPins(path); err != nil || !slices.Equal(pins, []string{"6.1.0-50-amd64", "6.1.0-56-amd64"}) {
		t.Errorf("LoadPins = %v, %v", pins, err)
	}
	must(t, os.WriteFile(path, []byte("6.1.0-50-amd64 6.1.0-56-amd64\n"), 0o644))
	if _, err := LoadPins(path); err == nil {
		t.Error("LoadPins(two on a line): no error")
	}
}
