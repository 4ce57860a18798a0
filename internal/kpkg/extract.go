package kpkg

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// tmpDirFor is the folder a kernel is unpacked into before it is renamed to
// dir. Only the holder of dir's lock uses it.
func tmpDirFor(dir string) string { return dir + ".tmp" }

// unpack extracts the .deb files into tmpDirFor(dir)/root and repairs the
// absolute paths in the result.
func unpack(ctx context.Context, dir string, debs []string, progress io.Writer) error {
	tmp := tmpDirFor(dir)
	if err := os.RemoveAll(tmp); err != nil { // left over by a killed run
		return err
	}
	root := filepath.Join(tmp, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for _, deb := range debs {
		start := time.Now()
		out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput()
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, bytes.TrimSpace(out))
		}
		fmt.Fprintf(progress, "kpkg: unpacked %s in %.1fs\n", filepath.Base(deb), time.Since(start).Seconds())
	}
	if err := fixTree(root); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("fix links in %s: %w", root, err)
	}
	return nil
}

// commitDir moves tmpDirFor(dir) to dir, replacing an incomplete dir.
func commitDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmpDirFor(dir), dir); err != nil {
		return fmt.Errorf("commit %s: %w", dir, err)
	}
	return nil
}

// fixTree makes a tree of unpacked packages self-contained: every symbolic
// link with an absolute target becomes a relative link to the same path
// inside root, and the "include /usr/src/..." lines of the headers'
// Makefiles include the file inside root instead.
func fixTree(root string) error {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		rel, ok := relinkTarget(root, path, target)
		if !ok {
			return nil
		}
		if err := os.Remove(path); err != nil {
			return err
		}
		return os.Symlink(rel, path)
	})
	if err != nil {
		return err
	}
	makefiles, err := filepath.Glob(filepath.Join(root, "usr", "src", "linux-headers-*", "Makefile"))
	if err != nil {
		return err
	}
	arch, _ := filepath.Glob(filepath.Join(root, "usr", "src", "linux-headers-*", "arch", "*", "Makefile"))
	for _, mf := range append(makefiles, arch...) {
		if err := fixMakefile(root, mf); err != nil {
			return err
		}
	}
	return nil
}

// relinkTarget returns the relative target that a link at path (inside
// root) needs to point at root+target, for an absolute target.
func relinkTarget(root, path, target string) (string, bool) {
	if !filepath.IsAbs(target) {
		return "", false
	}
	rel, err := filepath.Rel(filepath.Dir(path), filepath.Join(root, target))
	if err != nil {
		return "", false
	}
	return rel, true
}

var includeRE = regexp.MustCompile(`^(\s*-?include\s+)(/\S+)\s*$`)

// fixMakefile rewrites "include /abs/path" lines of the Makefile at mf
// (inside root) whose target exists inside root into an include relative
// to the Makefile's own folder. The kernel's top Makefile finds the source
// tree from its own path, so the include must name the file inside root,
// not a copy elsewhere.
func fixMakefile(root, mf string) error {
	b, err := os.ReadFile(mf)
	if err != nil {
		return err
	}
	out, changed := rewriteIncludes(root, mf, b)
	if !changed {
		return nil
	}
	return os.WriteFile(mf, out, 0o644)
}

func rewriteIncludes(root, mf string, b []byte) ([]byte, bool) {
	var buf bytes.Buffer
	changed := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := includeRE.FindStringSubmatch(line); m != nil {
			inside := filepath.Join(root, m[2])
			if _, err := os.Stat(inside); err == nil {
				if rel, err := filepath.Rel(filepath.Dir(mf), inside); err == nil {
					// $(MAKEFILE_LIST)'s last word is this Makefile while it
					// is being read, whatever make's working directory is.
					line = m[1] + "$(dir $(lastword $(MAKEFILE_LIST)))" + filepath.ToSlash(rel)
					changed = true
				}
			}
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	if !changed {
		return b, false
	}
	if !strings.HasSuffix(string(b), "\n") {
		buf.Truncate(buf.Len() - 1)
	}
	return buf.Bytes(), true
}
