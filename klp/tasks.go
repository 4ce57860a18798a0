package klp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Patch states of a task, as /proc/<pid>/patch_state prints them.
const (
	StateUndefined = -1 // no transition in progress
	StateUnpatched = 0
	StatePatched   = 1
)

// Task is a task (thread) and its live patch transition state.
type Task struct {
	PID   int      `json:"pid"` // thread group id
	TID   int      `json:"tid"`
	Comm  string   `json:"comm"`
	State int      `json:"patch_state"`
	Stack []string `json:"stack,omitempty"` // kernel stack, from /proc/<pid>/task/<tid>/stack
}

// Blockers returns the tasks whose patch_state is not target: during a
// transition, the tasks that still run the code being replaced. Their
// kernel stacks are read when the kernel shows them (root only).
func Blockers(root string, target int) ([]Task, error) {
	procs, err := os.ReadDir(filepath.Join(root, "proc"))
	if err != nil {
		return nil, err
	}
	var out []Task
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		tdir := filepath.Join(root, "proc", p.Name(), "task")
		threads, err := os.ReadDir(tdir)
		if err != nil {
			continue // exited
		}
		for _, t := range threads {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			dir := filepath.Join(tdir, t.Name())
			st, err := readInt(filepath.Join(dir, "patch_state"))
			if errors.Is(err, os.ErrPermission) {
				// patch_state is readable by root only.
				return nil, fmt.Errorf("read %s: %w (run as root to see the tasks blocking a transition)", filepath.Join(dir, "patch_state"), err)
			}
			if err != nil || st == StateUndefined || st == target {
				continue
			}
			task := Task{PID: pid, TID: tid, State: st}
			if b, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
				task.Comm = strings.TrimSpace(string(b))
			}
			task.Stack = readStack(filepath.Join(dir, "stack"))
			out = append(out, task)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TID < out[j].TID })
	return out, nil
}

// readStack reads a kernel stack file: lines like "[<0>] msleep+0x2d/0x40".
func readStack(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			if os.Geteuid() == 0 {
				// Root is refused too when ptrace access is locked down
				// (kernel.yama.ptrace_scope=3) or by an LSM.
				return []string{"(kernel stack not readable: refused even to root; kernel.yama.ptrace_scope=3 or a security module?)"}
			}
			return []string{"(kernel stack not readable: needs root)"}
		}
		return nil
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, "] "); strings.HasPrefix(l, "[<") && i > 0 {
			l = l[i+2:]
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TransitionTarget returns the state a patch in transition moves tasks to:
// patched while enabling, unpatched while disabling.
func TransitionTarget(p *Patch) int {
	if p.Enabled {
		return StatePatched
	}
	return StateUnpatched
}
