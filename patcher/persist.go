package patcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/stent-dev/stent/kinfo"
)

// Stored describes a patch kept under StateDir/patches for re-application
// at boot.
type Stored struct {
	Name       string    `json:"name"`
	File       string    `json:"file"` // path of the stored bundle or module (always derived from Name)
	FileSHA256 string    `json:"file_sha256"`
	Unsigned   bool      `json:"unsigned,omitempty"`
	Release    string    `json:"release"`
	BuildID    string    `json:"build_id,omitempty"`
	Level      int64     `json:"level"`
	Replace    bool      `json:"replace"`
	StoredAt   time.Time `json:"stored_at"`
}

// Guard says a persisted patch was loaded on a boot and has not yet
// stayed up for the guard window.
type Guard struct {
	Name          string    `json:"name"`
	BootID        string    `json:"boot_id"`
	LoadedAt      time.Time `json:"loaded_at"`
	CleanShutdown bool      `json:"clean_shutdown,omitempty"`
}

// Quarantine records a patch that is not loaded at boot any more because
// the machine went down soon after it was loaded.
type Quarantine struct {
	Name   string    `json:"name"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

func (rt *Runtime) dir(parts ...string) string {
	return filepath.Join(append([]string{rt.cfg.StateDir}, parts...)...)
}

// storedFile is where a patch's bytes are kept; the path is derived from
// the validated name, never read back from a state file.
func (rt *Runtime) storedFile(name string, unsigned bool) string {
	if unsigned {
		return rt.dir("patches", name+".ko")
	}
	return rt.dir("patches", name+".bundle")
}

func (rt *Runtime) persist(p *payload, name string, k *kinfo.Kernel) error {
	unsigned := p.manifest == nil
	file := rt.storedFile(name, unsigned)
	// Drop a stored copy of the other kind (a bundle replacing a bare .ko).
	os.Remove(rt.storedFile(name, !unsigned))
	if err := writeAtomic(file, p.raw, 0o600); err != nil {
		return err
	}
	s := Stored{Name: name, File: file, FileSHA256: p.fileSum, Unsigned: unsigned, Release: k.Release, StoredAt: rt.now().UTC()}
	if m := p.manifest; m != nil {
		s.BuildID, s.Level, s.Replace = m.Kernel.BuildID, m.Level, m.Replace
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := writeAtomic(rt.dir("patches", name+".json"), b, 0o600); err != nil {
		os.Remove(file)
		return err
	}
	os.Remove(rt.dir("quarantine", name+".json")) // an explicit apply --persist lifts it
	return nil
}

func (rt *Runtime) unpersist(name string) {
	if checkName(name) != nil {
		return
	}
	os.Remove(rt.storedFile(name, false))
	os.Remove(rt.storedFile(name, true))
	os.Remove(rt.dir("patches", name+".json"))
	os.Remove(rt.dir("guard", name+".json"))
}

func (rt *Runtime) isPersisted(name string) bool {
	_, err := rt.stored(name)
	return err == nil
}

// persistedIs reports whether the stored copy of name is the file whose
// sha256 is fileSum.
func (rt *Runtime) persistedIs(name, fileSum string) bool {
	s, err := rt.stored(name)
	return err == nil && s.FileSHA256 == fileSum
}

func (rt *Runtime) stored(name string) (*Stored, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var s Stored
	if err := readJSON(rt.dir("patches", name+".json"), &s); err != nil {
		return nil, err
	}
	if s.Name != name {
		return nil, fmt.Errorf("%s: names patch %q", rt.dir("patches", name+".json"), s.Name)
	}
	s.File = rt.storedFile(name, s.Unsigned)
	return &s, nil
}

// StoredPatches lists the patches kept for boot, lowest level first.
// Unreadable entries are skipped; LoadPersisted reports them.
func (rt *Runtime) StoredPatches() ([]Stored, error) {
	ok, _, err := rt.storedPatches()
	return ok, err
}

func (rt *Runtime) storedPatches() (ok []Stored, bad []SkipReason, err error) {
	err = eachJSON(rt.dir("patches"), func(path string) error {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		s, err := rt.stored(name)
		if err != nil {
			bad = append(bad, SkipReason{name, "unreadable state: " + err.Error()})
			return nil
		}
		ok = append(ok, *s)
		return nil
	})
	sort.Slice(ok, func(i, j int) bool {
		if ok[i].Level != ok[j].Level {
			return ok[i].Level < ok[j].Level
		}
		return ok[i].Name < ok[j].Name
	})
	return ok, bad, err
}

// Quarantined lists patches that load-persisted will not load.
func (rt *Runtime) Quarantined() ([]Quarantine, error) {
	var out []Quarantine
	err := eachJSON(rt.dir("quarantine"), func(path string) error {
		var q Quarantine
		if err := readJSON(path, &q); err != nil {
			return err
		}
		out = append(out, q)
		return nil
	})
	return out, err
}

func (rt *Runtime) quarantined(name string) (*Quarantine, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var q Quarantine
	if err := readJSON(rt.dir("quarantine", name+".json"), &q); err != nil {
		return nil, err
	}
	return &q, nil
}

func (rt *Runtime) markPending(name, bootID string) error {
	m := Guard{Name: name, BootID: bootID, LoadedAt: rt.now().UTC()}
	b, _ := json.MarshalIndent(m, "", "  ")
	return writeAtomic(rt.dir("guard", name+".json"), b, 0o600)
}

func (rt *Runtime) clearPending(name string) { os.Remove(rt.dir("guard", name+".json")) }

// BootReport says what LoadPersisted did with each stored patch.
type BootReport struct {
	Kernel      string        `json:"kernel"`
	Loaded      []string      `json:"loaded"`
	Skipped     []SkipReason  `json:"skipped"`
	Quarantined []Quarantine  `json:"quarantined"` // newly quarantined on this boot
	Failed      []SkipReason  `json:"failed"`
	Duration    time.Duration `json:"duration_ns"`
}

// SkipReason names a stored patch that was not loaded and why.
type SkipReason struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// LoadPersisted re-applies, at boot, every stored patch that matches the
// running kernel, except quarantined ones. A patch whose guard marker
// survived from an earlier boot (the machine went down within the guard
// window after loading it, without a clean shutdown) is quarantined first.
func (rt *Runtime) LoadPersisted(ctx context.Context, opts ApplyOptions) (*BootReport, error) {
	unlock, err := rt.lock(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	start := rt.now()
	k, err := readKernel(rt.cfg.Root)
	if err != nil {
		return nil, err
	}
	rep := &BootReport{Kernel: k.Release, Loaded: []string{}, Skipped: []SkipReason{}, Quarantined: []Quarantine{}, Failed: []SkipReason{}}
	if err := rt.checkGuards(k.BootID, rep); err != nil {
		return nil, err
	}
	stored, bad, err := rt.storedPatches()
	if err != nil {
		return nil, err
	}
	rep.Failed = append(rep.Failed, bad...)
	matches := func(s Stored) bool {
		return s.Release == k.Release && (s.BuildID == "" || k.BuildID == "" || s.BuildID == k.BuildID)
	}
	// A cumulative patch replaces every lower level: load only the top one
	// that fits this kernel, and what comes after it.
	var topReplace int64 = -1
	for _, s := range stored {
		if matches(s) && s.Replace && s.Level > topReplace && !rt.isQuarantined(s.Name) {
			topReplace = s.Level
		}
	}
	for _, s := range stored {
		if ctx.Err() != nil {
			rep.Skipped = append(rep.Skipped, SkipReason{s.Name, "not loaded: interrupted"})
			continue
		}
		switch {
		case s.Release != k.Release:
			rep.Skipped = append(rep.Skipped, SkipReason{s.Name, fmt.Sprintf("stored for kernel %s; running %s", s.Release, k.Release)})
			continue
		case s.BuildID != "" && k.BuildID != "" && s.BuildID != k.BuildID:
			rep.Skipped = append(rep.Skipped, SkipReason{s.Name, fmt.Sprintf("stored for kernel build %s; running build %s", s.BuildID, k.BuildID)})
			continue
		case rt.isQuarantined(s.Name):
			q, _ := rt.quarantined(s.Name)
			rep.Skipped = append(rep.Skipped, SkipReason{s.Name, "quarantined: " + q.Reason})
			continue
		case s.Level < topReplace:
			rep.Skipped = append(rep.Skipped, SkipReason{s.Name, fmt.Sprintf("superseded by a cumulative patch of level %d", topReplace)})
			continue
		}
		o := opts
		o.Persist, o.viaBoot, o.AllowUnsigned = false, true, s.Unsigned
		if _, err := rt.apply(ctx, s.File, o); err != nil {
			rep.Failed = append(rep.Failed, SkipReason{s.Name, err.Error()})
			continue
		}
		rep.Loaded = append(rep.Loaded, s.Name)
	}
	rep.Duration = rt.now().Sub(start)
	return rep, nil
}

func (rt *Runtime) isQuarantined(name string) bool {
	q, _ := rt.quarantined(name)
	return q != nil
}

// checkGuards turns guard markers left by an earlier boot into quarantines.
func (rt *Runtime) checkGuards(bootID string, rep *BootReport) error {
	return eachJSON(rt.dir("guard"), func(path string) error {
		var m Guard
		if err := readJSON(path, &m); err != nil {
			os.Remove(path) // unreadable marker: never block boot on it
			return nil
		}
		if m.BootID == bootID {
			return nil
		}
		if !m.CleanShutdown {
			q := Quarantine{Name: m.Name, Since: rt.now().UTC(), Reason: fmt.Sprintf(
				"the machine went down within %s of loading it at %s (boot %s) without a clean shutdown; stent apply --persist lifts the quarantine",
				rt.cfg.GuardWindow, m.LoadedAt.Format(time.RFC3339), shortID(m.BootID))}
			b, _ := json.MarshalIndent(q, "", "  ")
			if err := writeAtomic(rt.dir("quarantine", m.Name+".json"), b, 0o600); err != nil {
				return err
			}
			rep.Quarantined = append(rep.Quarantined, q)
		}
		return os.Remove(path)
	})
}

// Confirm clears the guard markers of patches that have now been up for
// the guard window on this boot; it returns their names.
func (rt *Runtime) Confirm() ([]string, error) {
	k, err := readKernel(rt.cfg.Root)
	if err != nil {
		return nil, err
	}
	var done []string
	err = eachJSON(rt.dir("guard"), func(path string) error {
		var m Guard
		if err := readJSON(path, &m); err != nil {
			return nil
		}
		if m.BootID == k.BootID && rt.now().Sub(m.LoadedAt) >= rt.cfg.GuardWindow {
			done = append(done, m.Name)
			return os.Remove(path)
		}
		return nil
	})
	return done, err
}

// MarkShutdown records a clean shutdown in the guard markers of this boot,
// so a planned reboot soon after loading a patch does not quarantine it.
func (rt *Runtime) MarkShutdown() error {
	k, err := readKernel(rt.cfg.Root)
	if err != nil {
		return err
	}
	return eachJSON(rt.dir("guard"), func(path string) error {
		var m Guard
		if err := readJSON(path, &m); err != nil || m.BootID != k.BootID {
			return nil
		}
		m.CleanShutdown = true
		b, _ := json.MarshalIndent(m, "", "  ")
		return writeAtomic(path, b, 0o600)
	})
}

// pendingGuards lists patches still inside their guard window.
func (rt *Runtime) pendingGuards() []Guard {
	var out []Guard
	eachJSON(rt.dir("guard"), func(path string) error {
		var m Guard
		if readJSON(path, &m) == nil {
			out = append(out, m)
		}
		return nil
	})
	return out
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// eachJSON calls f for every *.json file in dir; a missing dir is empty.
func eachJSON(dir string, f func(path string) error) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if err := f(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
