package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/kpkg"
)

// objectCFLAGS are added to the kernel's own flags for every object the
// builder compiles: one section per function and per variable, so that
// elfdiff can compare and extract them one by one.
const objectCFLAGS = "-ffunction-sections -fdata-sections"

// Tree is a kernel source tree prepared for compiling single objects with a
// distribution kernel's configuration.
type Tree struct {
	Dir      string // the source tree (make -C Dir)
	Pristine string // the untouched source the tree is hard-linked from; "" for --source trees
	Release  string
	CC       string
	state    string // folder for the builder's own files about this tree
}

type treeMeta struct {
	Release      string `json:"release"`
	ConfigSHA256 string `json:"config_sha256"`
	CC           string `json:"cc"`
	Flags        string `json:"flags"`
}

// compiler returns the compiler Debian built its kernels with when it is
// installed (gcc-12 for 6.1, named in CONFIG_CC_VERSION_TEXT), else gcc.
// Using the same name keeps make olddefconfig from rewriting the config.
func compiler(config []byte) string {
	for _, line := range strings.Split(string(config), "\n") {
		v, ok := strings.CutPrefix(line, "CONFIG_CC_VERSION_TEXT=\"")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(v, " ")
		if strings.HasPrefix(name, "gcc") {
			if _, err := exec.LookPath(name); err == nil {
				return name
			}
		}
	}
	return "gcc"
}

// PrepareTree returns a tree for release ready to compile single objects:
// a hard-linked copy of the pristine source under <cache>/trees/<release>
// with the kernel's config, after make olddefconfig and modules_prepare. It
// is made once per release and configuration; later calls return at once.
// When source is given (--source), that tree is prepared in place instead.
// Progress messages go to progress, which may be nil.
func PrepareTree(ctx context.Context, cache, pristine, source, release, config string, progress io.Writer) (*Tree, error) {
	if progress == nil {
		progress = io.Discard
	}
	cfg, err := os.ReadFile(config)
	if err != nil {
		return nil, fmt.Errorf("read kernel config: %w", err)
	}
	sum := sha256.Sum256(cfg)
	meta := treeMeta{Release: release, ConfigSHA256: hex.EncodeToString(sum[:]), CC: compiler(cfg), Flags: objectCFLAGS}
	t := &Tree{Release: release, CC: meta.CC}
	var dir string
	if source != "" {
		abs, err := filepath.Abs(source)
		if err != nil {
			return nil, err
		}
		t.Dir = abs
		t.state = filepath.Join(abs, ".stent")
		dir = t.state
	} else {
		dir = filepath.Join(cache, "trees", release)
		t.Dir = filepath.Join(dir, "tree")
		t.Pristine = pristine
		t.state = filepath.Join(dir, "state")
	}
	unlock, err := t.lock(ctx, cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := t.recover(); err != nil {
		return nil, err
	}
	metaPath := filepath.Join(dir, "prepared.json")
	if b, err := os.ReadFile(metaPath); err == nil {
		var have treeMeta
		if json.Unmarshal(b, &have) == nil && have == meta {
			return t, nil
		}
	}
	start := time.Now()
	if source == "" {
		fmt.Fprintf(progress, "tree: linking a copy of the source for %s\n", release)
		tmp := t.Dir + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		// cp -al: every file a hard link to the pristine copy; make and
		// the builder only ever replace files, never write into them.
		if out, err := exec.CommandContext(ctx, "cp", "-al", pristine, tmp).CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("copy source tree: %w: %s", err, lastLines(string(out), 3))
		}
		os.RemoveAll(t.Dir)
		if err := os.Rename(tmp, t.Dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(t.state, 0o755); err != nil {
		return nil, err
	}
	if err := replaceFile(filepath.Join(t.Dir, ".config"), cfg); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "tree: make olddefconfig modules_prepare (CC=%s)\n", t.CC)
	if _, err := t.make(ctx, "olddefconfig"); err != nil {
		return nil, err
	}
	if _, err := t.make(ctx, "-j"+jobs(), "modules_prepare"); err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(t.state, "orig")) // objects of another configuration
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := replaceFile(metaPath, append(b, '\n')); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "tree: prepared in %.1fs\n", time.Since(start).Seconds())
	return t, nil
}

// lock serialises work on one tree across processes. A --source tree's
// lock lives in the tree itself, so that builds with different caches
// ($STENT_CACHE) exclude each other too.
func (t *Tree) lock(ctx context.Context, cache string) (func(), error) {
	if t.Pristine == "" && t.state != "" {
		return lockFile(ctx, filepath.Join(t.state, "lock"))
	}
	return lockFile(ctx, filepath.Join(cache, "locks", "tree-"+strings.ReplaceAll(strings.Trim(t.Dir, "/"), "/", "_")+".lock"))
}

// make runs make in the tree with the builder's variables and returns its
// combined output; on failure the error quotes the compiler's messages.
func (t *Tree) make(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"-C", t.Dir, "CC=" + t.CC, "KCFLAGS=" + objectCFLAGS}, args...)
	cmd := groupCommand(ctx, "make", full...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := runGroup(ctx, cmd)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return out.Bytes(), &MakeError{Args: args, Output: out.String(), Err: err}
	}
	return out.Bytes(), nil
}

// MakeError is a failed make run in the kernel tree.
type MakeError struct {
	Args   []string
	Output string
	Err    error
}

func (e *MakeError) Error() string {
	return fmt.Sprintf("make %s: %v\n%s", strings.Join(e.Args, " "), e.Err, compilerMessages(e.Output))
}

func (e *MakeError) Unwrap() error { return e.Err }

// compilerMessages keeps the lines of make output that matter to a person:
// the compiler's errors with their context, or the last lines.
func compilerMessages(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var keep []string
	for i, l := range lines {
		if strings.Contains(l, "error:") || strings.Contains(l, "Error ") || strings.Contains(l, "No rule to make target") {
			lo := max(0, i-2)
			if strings.Contains(l, "error:") {
				// The source line and caret gcc prints after the message.
				keep = append(keep, lines[lo:min(len(lines), i+3)]...)
			} else {
				keep = append(keep, l)
			}
		}
	}
	if len(keep) == 0 {
		return lastLines(out, 15)
	}
	if len(keep) > 40 {
		keep = append(keep[:40], "...")
	}
	return strings.Join(dedupe(keep), "\n")
}

func dedupe(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

func jobs() string { return fmt.Sprint(max(2, runtime.NumCPU())) }

func lockFile(ctx context.Context, path string) (func(), error) { return kpkg.Lock(ctx, path) }

// replaceFile writes data to path through a temporary file and a rename, so
// a hard-linked file is replaced rather than written through, and two
// builds writing the same cache file do not trip over each other.
func replaceFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, 0o644)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// journal lists the tree files a build has changed, so that a build killed
// half-way is undone by the next one.
func (t *Tree) journal() string { return filepath.Join(t.state, "dirty.json") }

// recover restores the files a killed build left changed.
func (t *Tree) recover() error {
	b, err := os.ReadFile(t.journal())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var files []string
	if err := json.Unmarshal(b, &files); err != nil {
		return fmt.Errorf("read %s: %w", t.journal(), err)
	}
	if err := t.restore(files); err != nil {
		return err
	}
	return os.Remove(t.journal())
}

// restore puts files back as in the pristine source, or removes them when
// the pristine source lacks them. For a --source tree the copies saved
// before patching are used. The restored files are fresh copies, newer than
// anything make built while they were patched: a hard link back to the
// pristine file would bring back its old mtime, and what make generated
// from a patched header during the prepare phase (asm-offsets.h, bounds.h)
// would then look up to date and outlive the build.
func (t *Tree) restore(files []string) error {
	for _, f := range files {
		dst := filepath.Join(t.Dir, f)
		src := filepath.Join(t.Pristine, f)
		if t.Pristine == "" {
			src = filepath.Join(t.state, "saved", f)
		}
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		tmp := dst + ".stent-tmp"
		os.Remove(tmp)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyFile(src, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
	}
	return nil
}

// copyFileAtomic copies src to dst through a temporary file and a rename.
func copyFileAtomic(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return replaceFile(dst, b)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
