// Package patcher is Stent's host runtime: it applies, reverts and reports
// live patches on the running kernel, keeps them across reboots and guards
// against patches that crash the machine. It composes bundle (signature and
// manifest checks), kmod (module syscalls) and klp (livepatch sysfs).
//
// Apply never leaves a half-applied state: a check that fails happens before
// anything is loaded, and a transition that does not finish in time is
// reversed and its module unloaded before Apply returns.
package patcher

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/internal/charclass"
	"github.com/stent-dev/stent/klp"
	"github.com/stent-dev/stent/kmod"
)

// Config wires a Runtime to the host's folders. Root is the filesystem
// root /proc and /sys are read under; StateDir, RunDir and KeysDir are used
// as given, not under Root.
type Config struct {
	Root     string // filesystem root holding proc/ and sys/; "/" on a host, and when empty
	StateDir string // persistent state (/var/lib/stent)
	RunDir   string // per-boot state (/run/stent), empty after a reboot
	KeysDir  string // trusted public keys (/etc/stent/keys)
	Log      *slog.Logger
	// Poll is how often transitions are polled; 0 means 50ms.
	Poll time.Duration
	// GuardWindow is how long a persisted patch must stay up before it is
	// considered safe to load at boot again; 0 means 10 minutes.
	GuardWindow time.Duration
	// sys replaces the module syscalls in unit tests.
	sys moduleSys
}

// moduleSys is the part of kmod the runtime uses.
type moduleSys interface {
	Load(name string, data []byte) error
	Unload(name string) error
}

type realSys struct{}

func (realSys) Load(name string, data []byte) error { return kmod.LoadBytes(name, data, "") }
func (realSys) Unload(name string) error            { return kmod.Unload(name) }

// Runtime applies and reverts live patches on one host.
type Runtime struct {
	cfg Config
	log *slog.Logger
	sys moduleSys
	now func() time.Time
}

// New returns a Runtime for cfg, filling defaults.
func New(cfg Config) *Runtime {
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/stent"
	}
	if cfg.RunDir == "" {
		cfg.RunDir = "/run/stent"
	}
	if cfg.KeysDir == "" {
		cfg.KeysDir = "/etc/stent/keys"
	}
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	if cfg.GuardWindow == 0 {
		cfg.GuardWindow = 10 * time.Minute
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	sys := cfg.sys
	if sys == nil {
		sys = realSys{}
	}
	return &Runtime{cfg: cfg, log: log, sys: sys, now: time.Now}
}

// Event is a progress report from a long operation.
type Event struct {
	Step     string     // "verify", "load", "transition", "nudge", "reverse", "unload", "replace", "done"
	Message  string     // one line for a person
	Pending  int        // tasks still to switch, during a transition
	Blockers []klp.Task // during a transition, the tasks still on old code
	Elapsed  time.Duration
	Holder   string // "lock": who holds the lock, when known ("stent apply fix.stb (pid 42)")
}

// Progress receives events; nil discards them.
type Progress func(Event)

func (p Progress) emit(e Event) {
	if p != nil {
		p(e)
	}
}

// writeAtomic writes a state file atomically (see atomicfile).
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// moduleName normalises a module name the way the kernel does ('-' -> '_').
func moduleName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// nameChars is what a live patch (module) name may be made of: it names
// files in the state folders, so nothing else is accepted; at most 55 bytes
// (MODULE_NAME_LEN is 56 with the NUL on 64-bit kernels).
var nameChars = charclass.New("A-Za-z0-9_")

// checkName validates a patch name given by a user or read from a module.
func checkName(name string) error {
	if !(len(name) >= 1 && len(name) <= 55 && nameChars.All(name)) {
		return fmt.Errorf("%q is not a live patch name: use 1 to 55 letters, digits and underscores", name)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
