package patcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fsutil"
	"github.com/stent-dev/stent/kinfo"
	"github.com/stent-dev/stent/klp"
	"github.com/stent-dev/stent/kmod"
)

// ErrRefused is wrapped by every error that stops Apply before anything is
// loaded: wrong kernel, bad signature, not a livepatch module, ...
var ErrRefused = errors.New("refused")

// ErrStalled is wrapped by StallError.
var ErrStalled = errors.New("live patch transition did not finish")

// maxFileSize caps what apply reads: real livepatch modules are well under
// a few MB.
const maxFileSize = 256 << 20

// ApplyOptions tune Apply.
type ApplyOptions struct {
	AllowUnsigned bool          // accept a bare .ko instead of a signed bundle
	Timeout       time.Duration // how long to wait for the transition; 0 means 60s
	Force         bool          // on a stall, write the kernel's force file instead of reverting
	Persist       bool          // store the patch so load-persisted re-applies it at boot
	Progress      Progress
	// viaBoot marks an apply done by LoadPersisted (keeps the guard marker).
	viaBoot bool
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	Name           string        `json:"name"`
	AlreadyApplied bool          `json:"already_applied,omitempty"`
	Replaced       []string      `json:"replaced,omitempty"` // patches the cumulative patch replaced (their modules unloaded)
	Pinned         []string      `json:"pinned,omitempty"`   // replaced patches whose modules the kernel keeps (forced transition)
	Forced         bool          `json:"forced,omitempty"`
	Persisted      bool          `json:"persisted,omitempty"`
	Duration       time.Duration `json:"duration_ns"`
	Record         *Record       `json:"record"`
}

// StallError reports a transition that did not finish in time; the patch
// was reversed and unloaded unless Reverted is false.
type StallError struct {
	Name     string
	Waited   time.Duration
	Blockers []klp.Task
	Reverted bool  // the reverse transition finished and the module was unloaded
	Cleanup  error // what went wrong while undoing, if anything
}

func (e *StallError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "live patch %s: transition did not finish in %s; %s the old code",
		e.Name, e.Waited.Round(time.Second), plural(len(e.Blockers), "task still runs", "tasks still run"))
	if e.Reverted {
		b.WriteString("; the patch was reverted and its module unloaded, the kernel is as before")
	} else if e.Cleanup != nil {
		fmt.Fprintf(&b, "; undoing it failed: %v", e.Cleanup)
	}
	return b.String()
}

func (e *StallError) Unwrap() error { return ErrStalled }

// payload is a verified module ready to load.
type payload struct {
	module    []byte
	manifest  *bundle.Manifest // nil for a bare .ko
	keyID     string
	fileSum   string // identity of what was given: bundle.SHA256, or the module's sha256
	moduleSum string
	info      *kmod.Info
	raw       []byte // the file as given
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// readPayload reads FILE and checks everything that can be checked without
// touching the kernel: bundle structure and signature, module format,
// livepatch flag and target kernel.
func (rt *Runtime) readPayload(path string, allowUnsigned bool, k *kinfo.Kernel) (*payload, error) {
	raw, err := fsutil.ReadFileMax(path, maxFileSize)
	if errors.Is(err, fsutil.ErrTooLarge) || errors.Is(err, fsutil.ErrNotRegular) {
		return nil, refuse("%v: not a live patch", err)
	}
	if err != nil {
		return nil, err
	}
	p := &payload{raw: raw}
	if bytes.HasPrefix(raw, []byte("\x7fELF")) {
		if !allowUnsigned {
			return nil, refuse("%s is a bare kernel module, not a signed Stent bundle; pass --allow-unsigned to load it anyway", path)
		}
		p.module = raw
		p.moduleSum = sha(raw)
		p.fileSum = p.moduleSum
	} else {
		b, err := bundle.Parse(raw)
		if err != nil {
			return nil, refuse("%s: %v", path, err)
		}
		kr, err := bundle.LoadKeyring(rt.cfg.KeysDir)
		if err != nil {
			return nil, refuse("load trusted keys: %v", err)
		}
		if err := b.Verify(kr); err != nil {
			return nil, refuse("%s: %v", path, err)
		}
		p.module, p.manifest, p.keyID = b.Module(), b.Manifest(), b.KeyID().String()
		// Digests from Parse: the module is hashed once, not per check.
		p.moduleSum, p.fileSum = b.ModuleSHA256(), b.SHA256()
	}
	if m := p.manifest; m != nil {
		if m.Kernel.Release != k.Release {
			return nil, refuse("bundle %s targets kernel %s but this kernel is %s", m.Name, m.Kernel.Release, k.Release)
		}
		if m.Kernel.BuildID != "" && k.BuildID != "" && m.Kernel.BuildID != k.BuildID {
			return nil, refuse("bundle %s targets kernel build %s but this kernel's build ID is %s (same release, different build)", m.Name, m.Kernel.BuildID, k.BuildID)
		}
		if m.Kernel.PackageVersion != "" && k.PackageVersion != "" && m.Kernel.PackageVersion != k.PackageVersion {
			return nil, refuse("bundle %s targets package %s of kernel %s but this kernel is package %s (same release, different build)", m.Name, m.Kernel.PackageVersion, k.Release, k.PackageVersion)
		}
	}
	info, err := kmod.ModInfo(p.module)
	if err != nil {
		return nil, refuse("%s: %v", path, err)
	}
	p.info = info
	if !info.Livepatch {
		return nil, refuse("module %s is not a live patch (its modinfo has no livepatch=Y); load ordinary modules with modprobe", info.Name)
	}
	if rel := info.Release(); rel != k.Release {
		return nil, refuse("module %s was built for kernel %s (vermagic %q) but this kernel is %s", info.Name, rel, strings.TrimSpace(info.Vermagic), k.Release)
	}
	if err := checkName(info.Name); err != nil {
		return nil, refuse("module in %s: %v", path, err)
	}
	if info.ThisModule != "" && info.ThisModule != info.Name {
		return nil, refuse("module in %s says it is %s in .modinfo but registers as %s (.gnu.linkonce.this_module): not built by kbuild, or tampered", path, info.Name, info.ThisModule)
	}
	if m := p.manifest; m != nil && moduleName(m.Name) != info.Name {
		return nil, refuse("bundle manifest names patch %s but its module is %s", m.Name, info.Name)
	}
	return p, nil
}

// Apply loads the live patch in path (a signed bundle, or a bare .ko with
// AllowUnsigned) and waits for its transition. It holds the runtime's lock
// while it works. On failure the kernel is left as it was before the call,
// or, when the kernel would not let stent undo the load, the error says
// what is still loaded and the patch stays recorded.
func (rt *Runtime) Apply(ctx context.Context, path string, opts ApplyOptions) (*ApplyResult, error) {
	unlock, err := rt.lock(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return rt.apply(ctx, path, opts)
}

func (rt *Runtime) apply(ctx context.Context, path string, opts ApplyOptions) (*ApplyResult, error) {
	start := rt.now()
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	k, err := readKernel(rt.cfg.Root)
	if err != nil {
		return nil, err
	}
	opts.Progress.emit(Event{Step: "verify", Message: "checking " + path})
	p, err := rt.readPayload(path, opts.AllowUnsigned, k)
	if err != nil {
		return nil, err
	}
	name := p.info.Name
	if !klp.Supported(rt.cfg.Root) {
		sup := kinfo.CheckSupport(rt.cfg.Root, k.Release)
		return nil, refuse("this kernel cannot be live patched: %s", strings.Join(sup.Reasons, "; "))
	}
	if q, _ := rt.quarantined(name); q != nil && opts.viaBoot {
		return nil, refuse("%s is quarantined: %s", name, q.Reason)
	}

	// The same patch already running is success; a different one of the
	// same name must be reverted first.
	if cur, err := klp.Get(rt.cfg.Root, name); err == nil {
		recs, _ := rt.Records()
		if r := recs[name]; r != nil && r.ModuleSHA256 == p.moduleSum && cur.Enabled && !cur.Transition {
			r.Applying = false // left set by an apply that was killed during the transition
			if opts.Persist && !rt.persistedIs(name, p.fileSum) {
				if err := rt.persist(p, name, k); err != nil {
					return nil, err
				}
				r.Persisted = true
			}
			if err := rt.saveRecord(r); err != nil {
				return nil, err
			}
			return &ApplyResult{Name: name, AlreadyApplied: true, Record: r, Persisted: r.Persisted, Duration: rt.now().Sub(start)}, nil
		}
		return nil, refuse("a live patch named %s is already loaded (enabled=%v, transition=%v); revert it first, or apply a cumulative patch under a new name", name, cur.Enabled, cur.Transition)
	}
	if loaded, _ := kmod.IsLoaded(rt.cfg.Root, name); loaded {
		return nil, refuse("a module named %s is loaded but is not an active live patch; remove it (rmmod %s) and try again", name, name)
	}

	before, err := klp.List(rt.cfg.Root)
	if err != nil {
		return nil, err
	}
	for _, b := range before {
		if b.Transition {
			return nil, refuse("live patch %s is still in transition; the kernel runs one transition at a time: wait for it (stent status) or revert it", b.Name)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err // nothing loaded yet
	}

	// The record is written before loading so that status can tell, during
	// the transition, which patch stent is applying and what it fixes.
	rec := &Record{
		Name: name, Source: path, FileSHA256: p.fileSum, ModuleSHA256: p.moduleSum,
		Signed: p.manifest != nil, KeyID: p.keyID, Manifest: p.manifest,
		AppliedAt: rt.now().UTC(), BootID: k.BootID, Applying: true,
	}
	if err := rt.saveRecord(rec); err != nil {
		return nil, fmt.Errorf("write record: %w", err)
	}
	if opts.Persist || opts.viaBoot {
		// Mark before loading: if the machine dies before the guard window
		// passes, the next boot will not load this patch again.
		if err := rt.markPending(name, k.BootID); err != nil {
			rt.dropRecord(name)
			return nil, fmt.Errorf("write crash guard marker: %w", err)
		}
	}

	opts.Progress.emit(Event{Step: "load", Message: fmt.Sprintf("loading %s (%d bytes) into kernel %s", name, len(p.module), k.Release)})
	if err := rt.sys.Load(name, p.module); err != nil {
		rt.clearPending(name)
		rt.dropRecord(name)
		return nil, err
	}
	forced, err := rt.waitApplied(ctx, name, opts)
	if err != nil {
		return nil, rt.failAfterLoad(name, rec, err)
	}

	res := &ApplyResult{Name: name, Forced: forced}
	res.Replaced, res.Pinned = rt.unloadReplaced(context.WithoutCancel(ctx), before, name, forced, opts.Progress)
	rec.Applying, rec.Forced, rec.AppliedAt = false, forced, rt.now().UTC()
	for _, old := range res.Replaced {
		rt.dropRecord(old)
	}
	var persistErr error
	if opts.Persist {
		if persistErr = rt.persist(p, name, k); persistErr == nil {
			rec.Persisted = true
			// What the new cumulative patch replaced need not load at boot.
			for _, old := range res.Replaced {
				rt.unpersist(old)
			}
		}
	} else {
		rec.Persisted = rt.persistedIs(name, p.fileSum)
	}
	if err := rt.saveRecord(rec); err != nil {
		return nil, fmt.Errorf("patch %s is applied but its record could not be written: %w", name, err)
	}
	if persistErr != nil {
		rt.clearPending(name)
		// The patch is live; say plainly that it will not survive a reboot.
		return nil, fmt.Errorf("patch %s is applied but could not be stored for reboots: %w", name, persistErr)
	}
	res.Record = rec
	res.Persisted = rec.Persisted
	res.Duration = rt.now().Sub(start)
	opts.Progress.emit(Event{Step: "done", Message: fmt.Sprintf("%s applied in %s", name, res.Duration.Round(time.Millisecond)), Elapsed: res.Duration})
	return res, nil
}

// failAfterLoad cleans up after a failed transition wait. Only when the
// kernel no longer has the patch or its module are the record and guard
// marker dropped; otherwise they stay, so status and a later revert still
// know what is loaded.
func (rt *Runtime) failAfterLoad(name string, rec *Record, err error) error {
	_, gerr := klp.Get(rt.cfg.Root, name)
	loaded, _ := kmod.IsLoaded(rt.cfg.Root, name)
	if errors.Is(gerr, klp.ErrNoPatch) && !loaded {
		rt.clearPending(name)
		rt.dropRecord(name)
		return err
	}
	rec.Applying = false
	rt.saveRecord(rec)
	return fmt.Errorf("%w (module %s is still loaded: stent status shows it, stent revert %s removes it)", err, name, name)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readKernel reads the running kernel's identity under root.
func readKernel(root string) (*kinfo.Kernel, error) {
	k, err := kinfo.Read(root)
	if err != nil {
		return nil, fmt.Errorf("read running kernel: %w", err)
	}
	return k, nil
}
