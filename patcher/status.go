package patcher

import (
	"context"
	"errors"

	"github.com/stent-dev/stent/kinfo"
	"github.com/stent-dev/stent/klp"
)

// Status is everything the runtime can tell about the host's live patching.
type Status struct {
	Kernel      *kinfo.Kernel `json:"kernel"`
	Distro      *kinfo.Distro `json:"distro,omitempty"`
	Support     kinfo.Support `json:"support"`
	Taint       kinfo.Taint   `json:"taint"`
	Patches     []PatchStatus `json:"patches"`
	Transitions []Transition  `json:"transitions,omitempty"`
	Effective   *Uname        `json:"effective"`
	Stored      []Stored      `json:"stored"`
	Quarantined []Quarantine  `json:"quarantined"`
	Guarded     []Guard       `json:"guarded,omitempty"` // loaded persisted patches still inside the guard window
}

// PatchStatus is a registered live patch joined with what the runtime
// recorded when it applied it (nil Record: loaded by something else).
type PatchStatus struct {
	klp.Patch
	Record *Record `json:"record,omitempty"`
}

// Transition is a patch in transition and the tasks still on the code it
// is moving away from.
type Transition struct {
	Patch    string     `json:"patch"`
	Target   string     `json:"target"` // "patched" or "unpatched"
	Blockers []klp.Task `json:"blockers"`
	Note     string     `json:"note,omitempty"` // why the blockers could not be read
}

// Status reads the state of the kernel and of the runtime's records.
func (rt *Runtime) Status(ctx context.Context) (*Status, error) {
	k, err := readKernel(rt.cfg.Root)
	if err != nil {
		return nil, err
	}
	st := &Status{Kernel: k, Patches: []PatchStatus{}, Stored: []Stored{}, Quarantined: []Quarantine{}}
	if d, err := kinfo.ReadDistro(rt.cfg.Root); err == nil {
		st.Distro = d
	}
	st.Support = kinfo.CheckSupport(rt.cfg.Root, k.Release)
	if t, err := kinfo.ReadTaint(rt.cfg.Root); err == nil {
		st.Taint = t
	}
	recs, err := rt.Records()
	if err != nil {
		return nil, err
	}
	patches, err := klp.List(rt.cfg.Root)
	if err != nil && !errors.Is(err, klp.ErrNotSupported) {
		return nil, err
	}
	for _, p := range patches {
		st.Patches = append(st.Patches, PatchStatus{Patch: p, Record: recs[p.Name]})
		if p.Transition {
			target := klp.TransitionTarget(&p)
			blockers, berr := klp.Blockers(rt.cfg.Root, target)
			if blockers == nil {
				blockers = []klp.Task{}
			}
			name := "patched"
			if target == klp.StateUnpatched {
				name = "unpatched"
			}
			tr := Transition{Patch: p.Name, Target: name, Blockers: blockers}
			if berr != nil {
				tr.Note = berr.Error()
			}
			st.Transitions = append(st.Transitions, tr)
		}
	}
	st.Effective = effective(k, st.Patches)
	if s, err := rt.StoredPatches(); err == nil && s != nil {
		st.Stored = s
	}
	if q, err := rt.Quarantined(); err == nil && q != nil {
		st.Quarantined = q
	}
	st.Guarded = rt.pendingGuards()
	return st, ctx.Err()
}
