package factory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// FileDiff is one file's part of the difference of two source trees.
type FileDiff struct {
	Path   string // relative to the tree: "fs/nfsd/nfs4state.c"
	Binary bool   // diff(1) only says the files differ; there is no text to apply
	Text   string // unified diff with a/ and b/ paths (patch -p1); "" when Binary
}

// DiffTrees returns the files that differ between the source trees oldTree
// and newTree (diff -ruN: added and removed files too), in path order.
func DiffTrees(ctx context.Context, oldTree, newTree string) ([]FileDiff, error) {
	for _, d := range []string{oldTree, newTree} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("diff trees: %s is not a folder", d)
		}
	}
	// Run from a folder where a and b are the trees, so that the
	// difference has the a/ and b/ prefixes patch -p1 expects.
	tmp, err := os.MkdirTemp("", "stent-factory-diff-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for name, d := range map[string]string{"a": oldTree, "b": newTree} {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, err
		}
		if err := os.Symlink(abs, filepath.Join(tmp, name)); err != nil {
			return nil, err
		}
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "diff", "-ruN", "--no-dereference", "a/", "b/")
	cmd.Dir, cmd.Stdout, cmd.Stderr = tmp, &out, &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil: // no difference
	case errors.As(err, &exit) && exit.ExitCode() == 1: // differences
	default:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("diff %s %s: %w: %s", oldTree, newTree, err, strings.TrimSpace(stderr.String()))
	}
	return parseTreeDiff(out.String())
}

// parseTreeDiff splits diff -ruN output (run as "diff -ruN a/ b/") into
// files.
func parseTreeDiff(out string) ([]FileDiff, error) {
	var files []FileDiff
	var cur *strings.Builder
	flush := func() {
		if cur != nil {
			files[len(files)-1].Text = cur.String()
			cur = nil
		}
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		if line == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line, "diff "):
			flush()
			f := strings.Fields(line)
			p := f[len(f)-1]
			if !strings.HasPrefix(p, "b/") {
				return nil, fmt.Errorf("diff output: unexpected file line %q", strings.TrimSpace(line))
			}
			files = append(files, FileDiff{Path: strings.TrimPrefix(p, "b/")})
			cur = &strings.Builder{}
			cur.WriteString(line)
		case strings.HasPrefix(line, "Binary files "):
			flush()
			// "Binary files a/x and b/x differ"
			rest := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "Binary files ")), " differ")
			_, b, ok := strings.Cut(rest, " and b/")
			if !ok {
				return nil, fmt.Errorf("diff output: unexpected line %q", strings.TrimSpace(line))
			}
			if n := len(files); n > 0 && files[n-1].Path == b {
				files[n-1].Binary = true
			} else {
				files = append(files, FileDiff{Path: b, Binary: true})
			}
		case strings.HasPrefix(line, "Only in ") || strings.HasPrefix(line, "File ") || strings.HasPrefix(line, "Symbolic links "):
			// Symbolic links and special files: nothing patch can apply.
			flush()
			files = append(files, FileDiff{Path: strings.TrimSpace(line), Binary: true})
		default:
			if cur == nil {
				return nil, fmt.Errorf("diff output: text outside a file: %q", strings.TrimSpace(line))
			}
			cur.WriteString(line)
		}
	}
	flush()
	for i := range files {
		if files[i].Binary {
			files[i].Text = ""
		}
	}
	return files, nil
}
