package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// ObjectPair is one kernel object compiled from the pristine and from the
// patched source.
type ObjectPair struct {
	Object  string // tree path, e.g. fs/proc/cmdline.o
	Source  string // fs/proc/cmdline.c
	Target  string // livepatch object: "vmlinux" or the module's name
	ModFile string // KBUILD_MODFILE, e.g. fs/ext4/ext4 (the .ko path without .ko)
	Orig    string // the original object's copy
	Patched string // the patched object's copy
}

var (
	reModName = regexp.MustCompile(`-DKBUILD_MODNAME='"([^"]+)"'`)
	reModFile = regexp.MustCompile(`-DKBUILD_MODFILE='"([^"]+)"'`)
)

// objectTarget reads kbuild's .<name>.o.cmd of an object to tell whether it
// is built into vmlinux or into a module, and which.
func objectTarget(tree, obj string) (target, modfile string, err error) {
	cmdFile := filepath.Join(tree, filepath.Dir(obj), "."+filepath.Base(obj)+".cmd")
	b, err := os.ReadFile(cmdFile)
	if err != nil {
		return "", "", fmt.Errorf("read the compile command of %s: %w", obj, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if m := reModFile.FindStringSubmatch(first); m != nil {
		modfile = m[1]
	}
	if !strings.Contains(first, " -DMODULE ") {
		return "vmlinux", modfile, nil
	}
	m := reModName.FindStringSubmatch(first)
	if m == nil {
		return "", "", fmt.Errorf("%s: no KBUILD_MODNAME in %s", obj, cmdFile)
	}
	return strings.ReplaceAll(m[1], "-", "_"), modfile, nil
}

// Fix is the source fix Compile applies.
type Fix struct {
	Patches []string     // unified diffs, applied in order with patch -p1
	Changes []FileChange // the files they touch (ParsePatch)
	// AllowFuzz accepts hunks that apply only when patch(1) ignores some
	// of their context lines; without it such a fix is refused
	// (ErrPatchFuzz).
	AllowFuzz bool
	// Files are added to the tree, by tree path, while the patched
	// objects compile (Stent's header, include/stent/livepatch.h), and
	// removed with the fix.
	Files map[string][]byte
}

// Compile compiles objs before and after applying the fix, and returns the
// object pairs, copied into work, and the hunks that applied with an offset
// or fuzz (each also printed to progress as a warning). The tree is locked
// for the duration and always left pristine: the patched files are restored
// even when compiling fails or the build is interrupted (a killed build is
// undone by the next one).
func (t *Tree) Compile(ctx context.Context, cache string, fix Fix, objs []string, work string, progress io.Writer) (pairs []ObjectPair, moved []Hunk, err error) {
	unlock, err := t.lock(ctx, cache)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if err := t.recover(); err != nil {
		return nil, nil, fmt.Errorf("restore the tree after an interrupted build: %w", err)
	}

	// 1. Originals. A cache tree's pristine source never changes, so its
	// originals are compiled once and kept. A --source tree is the user's
	// and may have changed since the last build (an edit, a git checkout):
	// an original kept from then would make every function that changed
	// in between look changed by the fix and be carried into the patch, so
	// its originals are compiled every time.
	origCache := filepath.Join(t.state, "orig")
	var missing []string
	for _, o := range objs {
		if _, err := os.Stat(filepath.Join(origCache, o)); err != nil || t.Pristine == "" {
			missing = append(missing, o)
		}
	}
	if len(missing) > 0 {
		start := time.Now()
		fmt.Fprintf(progress, "compile: original %s\n", strings.Join(missing, " "))
		for _, o := range missing {
			os.Remove(filepath.Join(t.Dir, o))
		}
		if _, err := t.make(ctx, append([]string{"-j" + jobs()}, missing...)...); err != nil {
			var me *MakeError
			if errors.As(err, &me) {
				return nil, nil, fmt.Errorf("compile the unpatched objects (is the file built in this kernel's configuration?): %w", err)
			}
			return nil, nil, err
		}
		for _, o := range missing {
			// The .cmd file first, each through a rename: a kept object
			// always comes with its .cmd, and a build killed while copying
			// leaves no truncated object for the next build to trust.
			for _, f := range []string{filepath.Join(filepath.Dir(o), "."+filepath.Base(o)+".cmd"), o} {
				if err := copyFileAtomic(filepath.Join(t.Dir, f), filepath.Join(origCache, f)); err != nil {
					return nil, nil, err
				}
			}
		}
		fmt.Fprintf(progress, "compile: originals in %.1fs\n", time.Since(start).Seconds())
	}
	for _, o := range objs {
		target, modfile, err := objectTarget(origCache, o)
		if err != nil {
			return nil, nil, err
		}
		p := ObjectPair{Object: o, Source: strings.TrimSuffix(o, ".o") + ".c", Target: target, ModFile: modfile,
			Orig: filepath.Join(work, "orig", o), Patched: filepath.Join(work, "patched", o)}
		if err := copyFile(filepath.Join(origCache, o), p.Orig); err != nil {
			return nil, nil, err
		}
		pairs = append(pairs, p)
	}

	// 2. Patch, compile, restore.
	var touched []string
	for _, c := range fix.Changes {
		touched = append(touched, c.Path)
	}
	var added []string
	for f := range fix.Files {
		added = append(added, f)
	}
	sort.Strings(added)
	touched = append(touched, added...)
	if t.Pristine == "" {
		// A --source tree: keep copies to restore from.
		for _, f := range touched {
			src := filepath.Join(t.Dir, f)
			dst := filepath.Join(t.state, "saved", f)
			os.Remove(dst)
			if err := copyFile(src, dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, nil, err
			}
		}
	}
	var newDirs []string // made for fix.Files, removed with them
	j, _ := json.Marshal(touched)
	if err := replaceFile(t.journal(), j); err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, o := range objs {
			os.Remove(filepath.Join(t.Dir, o))
		}
		if rerr := t.restore(touched); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore the tree: %w", rerr))
			return
		}
		for i := len(newDirs) - 1; i >= 0; i-- {
			os.Remove(newDirs[i]) // only when empty
		}
		os.Remove(t.journal())
	}()
	// Replace hard links by private copies before patch(1) writes.
	for _, f := range touched {
		p := filepath.Join(t.Dir, f)
		if b, err := os.ReadFile(p); err == nil {
			if err := replaceFile(p, b); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, f := range added {
		p := filepath.Join(t.Dir, f)
		var made []string
		for d := filepath.Dir(p); d != t.Dir && d != "/"; d = filepath.Dir(d) {
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
				break
			}
			made = append([]string{d}, made...)
		}
		newDirs = append(newDirs, made...)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, nil, err
		}
		if err := replaceFile(p, fix.Files[f]); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range fix.Patches {
		hunks, err := applyPatch(ctx, t.Dir, p, fix.AllowFuzz)
		if err != nil {
			return nil, nil, err
		}
		for _, h := range hunks {
			fmt.Fprintf(progress, "compile: warning: %s\n", h)
		}
		moved = append(moved, hunks...)
	}
	start := time.Now()
	fmt.Fprintf(progress, "compile: patched %s\n", strings.Join(objs, " "))
	for _, o := range objs {
		os.Remove(filepath.Join(t.Dir, o))
	}
	if _, err := t.make(ctx, append([]string{"-j" + jobs()}, objs...)...); err != nil {
		var me *MakeError
		if errors.As(err, &me) {
			return nil, nil, fmt.Errorf("the patched source does not compile: %w", err)
		}
		return nil, nil, err
	}
	for _, p := range pairs {
		if err := copyFile(filepath.Join(t.Dir, p.Object), p.Patched); err != nil {
			return nil, nil, err
		}
	}
	fmt.Fprintf(progress, "compile: patched in %.1fs\n", time.Since(start).Seconds())
	return pairs, moved, nil
}
