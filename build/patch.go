package build

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
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
// with one leading component such as a/ and b/) touches, in order. Inside a
// hunk, lines are counted from its @@ header, so that a removed line whose
// text begins with "-- " or an added one beginning with "++ " is not taken
// for a file header; a hunk with fewer lines than its header promises is an
// error.
func ParsePatch(data []byte) ([]FileChange, error) {
	var out []FileChange
	seen := map[string]int{}
	var minus string
	haveMinus, inFile := false, false
	oldLeft, newLeft := 0, 0 // lines of the current hunk still to come
	hunkLine := 0            // where the current hunk started
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		n++
		if oldLeft > 0 || newLeft > 0 {
			// Inside a hunk: an empty line is an empty context line
			// (some mailers strip the space), "\ No newline at end of
			// file" qualifies the line before it.
			switch {
			case line == "" || line[0] == ' ':
				oldLeft--
				newLeft--
			case line[0] == '-':
				oldLeft--
			case line[0] == '+':
				newLeft--
			case line[0] == '\\':
			default:
				return nil, fmt.Errorf("patch: line %d: hunk of line %d ends early (%d old and %d new lines missing, at %q): the @@ line counts do not match its lines", n, hunkLine, oldLeft, newLeft, line)
			}
			if oldLeft < 0 || newLeft < 0 {
				return nil, fmt.Errorf("patch: line %d: hunk of line %d has more lines than its @@ line counts", n, hunkLine)
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "rename from ") || strings.HasPrefix(line, "copy from "):
			// A git rename or copy: patch(1) would move or create files
			// this list does not name, which the tree could not be
			// restored from; a live patch cannot rename a file anyway.
			return nil, fmt.Errorf("patch: the fix renames or copies %s (git %q): a live patch cannot move source files; make the change in place", strings.TrimSpace(line[strings.Index(line, " from ")+6:]), line)
		case strings.HasPrefix(line, "--- "):
			minus, haveMinus = diffPath(line[4:]), true
			inFile = false
		case strings.HasPrefix(line, "+++ "):
			plus := diffPath(line[4:])
			if !haveMinus {
				minus = ""
			}
			haveMinus = false
			fc := FileChange{Path: plus}
			switch {
			case plus == "" && minus == "":
				return nil, fmt.Errorf("patch: line %d: file header without paths near %q", n, line)
			case plus == "":
				fc = FileChange{Path: minus, Deleted: true}
			case minus == "":
				fc.New = true
			}
			if strings.Contains(fc.Path, "..") || path.IsAbs(fc.Path) {
				return nil, fmt.Errorf("patch: path %q leaves the kernel tree", fc.Path)
			}
			inFile = true
			if i, ok := seen[fc.Path]; ok {
				out[i].New = out[i].New && fc.New
				continue
			}
			seen[fc.Path] = len(out)
			out = append(out, fc)
		case strings.HasPrefix(line, "@@ "):
			if !inFile {
				return nil, fmt.Errorf("patch: line %d: hunk %q before any ---/+++ file header", n, line)
			}
			m := reHunkHeader.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("patch: line %d: bad hunk header %q (want @@ -L[,N] +L[,N] @@)", n, line)
			}
			oldLeft, newLeft = hunkCount(m[1]), hunkCount(m[2])
			hunkLine = n
		default:
			haveMinus = false
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read patch: %w", err)
	}
	if oldLeft > 0 || newLeft > 0 {
		return nil, fmt.Errorf("patch: the hunk of line %d is cut short at the end of the patch (%d old and %d new lines missing)", hunkLine, oldLeft, newLeft)
	}
	if len(out) == 0 {
		return nil, errors.New("patch: no file changes found (want a unified diff, as made by diff -u or git diff)")
	}
	return out, nil
}

// reHunkHeader matches a unified diff hunk header; the submatches are the
// line counts (absent: 1).
var reHunkHeader = regexp.MustCompile(`^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@`)

func hunkCount(s string) int {
	if s == "" {
		return 1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 1<<30 {
		return 1 << 30 // never reached: the hunk is reported cut short
	}
	return n
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
		s = rest
	}
	if s = path.Clean(s); s == "." {
		return ""
	}
	return s
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
				unsupported = append(unsupported, c.Path+" (a header: name the objects that must be rebuilt with --object DIR/FILE.o; "+includersHint(c.Path)+")")
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

// includersHint tells how to find the source files that include header
// directly: the first candidates for --object (files that include it
// through another header need it too).
func includersHint(header string) string {
	dir, base := path.Split(header)
	if i := strings.LastIndex(header, "include/"); i >= 0 && (i == 0 || header[i-1] == '/') {
		// include/linux/fs.h, arch/x86/include/asm/tlb.h: #include <linux/fs.h>
		name := header[i+len("include/"):]
		return fmt.Sprintf("files that include it directly: grep -rl --include='*.c' '#include <%s>' in the kernel source", name)
	}
	// fs/ext4/ext4.h: #include "ext4.h" in its own folder
	return fmt.Sprintf("files that include it directly: grep -l '#include \"%s\"' %s*.c in the kernel source", base, dir)
}

// ErrPatchFuzz is wrapped when the fix applies only with fuzz (patch(1)
// ignoring context lines that no longer match) and fuzz was not allowed.
var ErrPatchFuzz = errors.New("patch applies only with fuzz")

// Hunk is a hunk of the fix that patch(1) applied away from where the diff
// put it (an offset) or only after ignoring some of its context (fuzz).
// An offset is harmless: the code around the change is the code the diff
// shows. Fuzz means it is not, and the change may land on the wrong lines.
type Hunk struct {
	Patch  string `json:"patch"` // the fix file, as given
	File   string `json:"file"`  // tree path
	Number int    `json:"hunk"`  // 1-based, counted per file as patch(1) does
	Line   int    `json:"line"`  // the line it applied at
	Offset int    `json:"offset,omitempty"`
	Fuzz   int    `json:"fuzz,omitempty"` // context lines ignored at each end
}

func (h Hunk) String() string {
	s := fmt.Sprintf("%s: %s hunk #%d applied at line %d", filepath.Base(h.Patch), h.File, h.Number, h.Line)
	var how []string
	if h.Offset != 0 {
		how = append(how, fmt.Sprintf("offset %+d", h.Offset))
	}
	if h.Fuzz != 0 {
		how = append(how, fmt.Sprintf("fuzz %d", h.Fuzz))
	}
	if len(how) > 0 {
		s += " (" + strings.Join(how, ", ") + ")"
	}
	return s
}

// GNU patch 2.7's messages (LC_ALL=C) for a hunk that did not apply
// exactly: "Hunk #2 succeeded at 21 with fuzz 1 (offset 1 line)."
var (
	reHunk     = regexp.MustCompile(`^Hunk #(\d+) succeeded at (\d+)(?: with fuzz (\d+))?(?: \(offset (-?\d+) lines?\))?\.$`)
	rePatching = regexp.MustCompile(`^(?:checking|patching) file (.+)$`)
)

// parseHunks reads the hunks that applied with an offset or fuzz from the
// output of GNU patch (without -s).
func parseHunks(patchFile, out string) []Hunk {
	var hunks []Hunk
	file := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if m := rePatching.FindStringSubmatch(line); m != nil {
			file = m[1]
			if len(file) >= 2 && (file[0] == '\'' || file[0] == '"') && file[len(file)-1] == file[0] {
				file = file[1 : len(file)-1]
			}
			continue
		}
		m := reHunk.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		h := Hunk{Patch: patchFile, File: file}
		h.Number, _ = strconv.Atoi(m[1])
		h.Line, _ = strconv.Atoi(m[2])
		if m[3] != "" {
			h.Fuzz, _ = strconv.Atoi(m[3])
		}
		if m[4] != "" {
			h.Offset, _ = strconv.Atoi(m[4])
		}
		hunks = append(hunks, h)
	}
	return hunks
}

// applyPatch runs GNU patch(1) on the tree: a dry run first, so that a fix
// that does not apply leaves the tree untouched, then for real. It returns
// the hunks that applied with an offset or fuzz. Fuzz (the default of
// patch(1) is to ignore up to two context lines at each end of a hunk)
// makes it refuse, naming the hunks, unless allowFuzz: the changed lines may
// then sit in other code than the fix was written for, and the live patch
// built from them would change the wrong spot.
func applyPatch(ctx context.Context, dir, file string, allowFuzz bool) ([]Hunk, error) {
	run := func(extra ...string) (string, error) {
		args := append([]string{"-p1", "-f", "--no-backup-if-mismatch", "-r", "-", "-d", dir, "-i", file}, extra...)
		cmd := exec.CommandContext(ctx, "patch", args...)
		// patch(1)'s messages are parsed: no translations.
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("%w: %s: %s", ErrPatchDoesNotApply, file, strings.TrimSpace(string(out)))
		}
		return string(out), nil
	}
	out, err := run("--dry-run")
	if err != nil {
		return nil, err
	}
	var fuzzy []string
	for _, h := range parseHunks(file, out) {
		if h.Fuzz > 0 {
			fuzzy = append(fuzzy, h.String())
		}
	}
	var fuzz []string
	if !allowFuzz {
		if len(fuzzy) > 0 {
			return nil, fmt.Errorf("%w: %s; the context of these hunks differs from this kernel's source, so the change may land on other lines than the fix meant: check with patch -p1 --dry-run --verbose, rebase the fix onto this kernel's source, or pass --allow-fuzz after checking the result",
				ErrPatchFuzz, strings.Join(fuzzy, "; "))
		}
		// Offsets are searched at fuzz 0 first, so this applies exactly
		// what the dry run found.
		fuzz = []string{"--fuzz=0"}
	}
	if out, err = run(fuzz...); err != nil {
		return nil, err
	}
	return parseHunks(file, out), nil
}
