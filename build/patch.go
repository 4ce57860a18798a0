package build

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"sort"
	"strings"
)

// ErrPatchDoesNotApply is wrapped when patch(1) rejects the fix.
var ErrPatchDoesNotApply = errors.New("patch does not apply")

// FileChange is one file a unified diff touches, relative to the tree top.
type FileChange struct {
	Path    string
	New     bool // created by the patch
	Deleted bool
}

// ParsePatch lists the files a unified diff (plain or git format, paths
// with one leading component such as a/ and b/) touches, in order.
func ParsePatch(data []byte) ([]FileChange, error) {
	var out []FileChange
	seen := map[string]int{}
	var minus string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "rename from ") || strings.HasPrefix(line, "copy from "):
			// A git rename or copy: patch(1) would move or create files
			// this list does not name, which the tree could not be
			// restored from; a live patch cannot rename a file anyway.
			return nil, fmt.Errorf("patch: the fix renames or copies %s (git %q): a live patch cannot move source files; make the change in place", strings.TrimSpace(line[strings.Index(line, " from ")+6:]), line)
		case strings.HasPrefix(line, "--- "):
			minus = diffPath(line[4:])
		case strings.HasPrefix(line, "+++ "):
			plus := diffPath(line[4:])
			fc := FileChange{Path: plus}
			switch {
			case plus == "" && minus == "":
				return nil, fmt.Errorf("patch: file header without paths near %q", line)
			case plus == "":
				fc = FileChange{Path: minus, Deleted: true}
			case minus == "":
				fc.New = true
			}
			if strings.Contains(fc.Path, "..") || path.IsAbs(fc.Path) {
				return nil, fmt.Errorf("patch: path %q leaves the kernel tree", fc.Path)
			}
			if i, ok := seen[fc.Path]; ok {
				out[i].New = out[i].New && fc.New
				continue
			}
			seen[fc.Path] = len(out)
			out = append(out, fc)
			minus = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read patch: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("patch: no file changes found (want a unified diff, as made by diff -u or git diff)")
	}
	return out, nil
}

// diffPath turns a ---/+++ header path into a tree path, dropping the first
// component (-p1) and any timestamp; /dev/null becomes "".
func diffPath(s string) string {
	if i := strings.IndexByte(s, '\t'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if s == "/dev/null" {
		return ""
	}
	if _, rest, ok := strings.Cut(s, "/"); ok {
		return path.Clean(rest)
	}
	return path.Clean(s)
}

// objectsFor maps the files a fix touches to the kernel objects to compile.
// Header and other changes need the objects named explicitly.
func objectsFor(changes []FileChange, extra []string) (objs []string, warnings []string, err error) {
	set := map[string]bool{}
	var unsupported []string
	for _, c := range changes {
		switch ext := path.Ext(c.Path); {
		case ext == ".c" && c.Deleted:
			return nil, nil, fmt.Errorf("the fix deletes %s: a live patch cannot remove an object; reboot into a fixed kernel", c.Path)
		case ext == ".c":
			set[strings.TrimSuffix(c.Path, ".c")+".o"] = true
		case strings.HasPrefix(c.Path, "Documentation/") || ext == ".rst" || ext == ".txt" || path.Base(c.Path) == "MAINTAINERS":
			warnings = append(warnings, "ignored documentation change to "+c.Path)
		case ext == ".h":
			if len(extra) == 0 {
				unsupported = append(unsupported, c.Path+" (a header: name the objects that must be rebuilt with --object DIR/FILE.o)")
			}
		default:
			unsupported = append(unsupported, c.Path)
		}
	}
	if len(unsupported) > 0 {
		return nil, nil, fmt.Errorf("the fix changes files the builder cannot turn into a live patch: %s", strings.Join(unsupported, ", "))
	}
	for _, e := range extra {
		if !strings.HasSuffix(e, ".o") || strings.Contains(e, "..") || path.IsAbs(e) {
			return nil, nil, fmt.Errorf("--object %q: want a path like fs/proc/cmdline.o relative to the tree top", e)
		}
		set[path.Clean(e)] = true
	}
	for o := range set {
		objs = append(objs, o)
	}
	sort.Strings(objs)
	return objs, warnings, nil
}

// applyPatch runs patch(1) on the tree: a dry run first, so that a fix that
// does not apply leaves the tree untouched, then for real.
func applyPatch(ctx context.Context, dir, file string) error {
	for _, dry := range []bool{true, false} {
		args := []string{"-p1", "-f", "-s", "--no-backup-if-mismatch", "-r", "-", "-d", dir, "-i", file}
		if dry {
			args = append(args, "--dry-run")
		}
		out, err := exec.CommandContext(ctx, "patch", args...).CombinedOutput()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %s: %s", ErrPatchDoesNotApply, file, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
