package factory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/vuln"
)

// ErrDoesNotApply is wrapped when a fix's difference does not apply to a
// kernel's source tree.
var ErrDoesNotApply = errors.New("fix does not apply")

// Origins of a fix's patch.
const (
	OriginSource = "source-diff" // the linux-source packages' difference
	OriginGit    = "git"         // the stable commit a kernel CNA record names
)

// Fix is one fix an upload brings: one changelog item and its part of the
// source difference (or its stable commit).
type Fix struct {
	Upload  string   `json:"upload"`  // package version whose changelog names it: "6.1.192-3"
	Index   int      `json:"index"`   // 1-based, in changelog order across the upload's entries
	Summary string   `json:"summary"` // the changelog item
	CVEs    []string `json:"cves,omitempty"`
	Files   []string `json:"files"`
	Origin  string   `json:"origin"`           // OriginSource or OriginGit
	Commit  string   `json:"commit,omitempty"` // OriginGit: the stable commit
	CNA     string   `json:"cna,omitempty"`    // OriginGit: the .dyad file naming it
	Patch   string   `json:"-"`                // unified diff for patch -p1
	// Triage is whether it can be a live patch, when asked (Options.Triage).
	Triage *Triage `json:"triage,omitempty"`
}

// Name is a file and module name for the fix: "6.1.192-3_1".
func (f *Fix) Name() string { return fmt.Sprintf("%s_%d", f.Upload, f.Index) }

// Upload is what one distribution upload brings over the one before it.
type Upload struct {
	Version  string    `json:"version"`  // "6.1.192-3"
	Previous string    `json:"previous"` // "6.1.192-2"
	Date     time.Time `json:"date"`     // the newest changelog entry's
	Fixes    []Fix     `json:"fixes"`
	// Changes the changelog names that no file of the difference could be
	// attributed to (documentation, packaging, or a fix the heuristic
	// could not place).
	Unplaced []string `json:"unplaced,omitempty"`
	// Unattributed is the difference no changelog item claims; its Patch
	// is kept so nothing is lost silently.
	Unattributed *Fix `json:"unattributed,omitempty"`
	// UnattributedTriage is the triage of each unattributed file.
	UnattributedTriage []FileTriage `json:"unattributed_triage,omitempty"`
	// Skipped are differences patch cannot apply (binary files, links).
	Skipped []string `json:"skipped,omitempty"`
	Steps   []Step   `json:"steps"`
}

// Step is the time one step of Extract took.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// Options configure Extract.
type Options struct {
	Cache string // $STENT_CACHE; default kpkg.CacheDir()
	// Branch is the stable branch of the kernel series: "6.1". Default: the
	// first two numbers of the version.
	Branch string
	// Git is the stable kernel's git repository (an operator's mirror),
	// where the commits kernel CNA records name are taken from. "" takes
	// every fix from the source difference.
	Git string
	// CNA is a folder of kernel CNA records (the CNA repository's layout,
	// cve/published/YEAR/CVE-ID.dyad); needed with Git.
	CNA      string
	Progress io.Writer
	// Triage says of each fix whether it can be a live patch (TriageUpload),
	// against the --from source and the kernel configuration Config ("":
	// x86, every file built).
	Triage bool
	Config string
}

// Extract returns the fixes upload version `to` brings over version `from`
// (linux-source package versions, e.g. "6.1.192-2" and "6.1.192-3"): both
// source trees come from the distribution's linux-source packages
// (build.Source, cached), the changelog from the new package.
func Extract(ctx context.Context, from, to string, opts Options) (*Upload, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Cache == "" {
		c, err := kpkg.CacheDir()
		if err != nil {
			return nil, err
		}
		opts.Cache = c
	}
	if opts.Git != "" && opts.CNA == "" {
		return nil, errors.New("extract: --git needs --cna, the kernel CNA records that name each CVE's stable commit")
	}
	if err := checkVersions(from, to); err != nil {
		return nil, err
	}
	if opts.Triage && opts.Config != "" {
		if _, err := readConfig(opts.Config); err != nil {
			return nil, err // before any download
		}
	}
	var steps []Step
	timed := func(name string, f func() error) error {
		start := time.Now()
		err := f()
		steps = append(steps, Step{name, time.Since(start)})
		return err
	}
	var oldTree, newTree, changelog string
	err := timed("source", func() error {
		var err error
		if oldTree, err = build.Source(ctx, opts.Cache, from, opts.Progress); err != nil {
			return err
		}
		if newTree, err = build.Source(ctx, opts.Cache, to, opts.Progress); err != nil {
			return err
		}
		changelog, err = packageChangelog(ctx, opts.Cache, to)
		return err
	})
	if err != nil {
		return nil, err
	}
	cl, err := vuln.ParseDebianChangelog("changelog of linux-source "+to, strings.NewReader(changelog))
	if err != nil {
		return nil, err
	}
	var files []FileDiff
	if err := timed("diff", func() error {
		fmt.Fprintf(opts.Progress, "factory: comparing the sources of %s and %s\n", from, to)
		files, err = DiffTrees(ctx, oldTree, newTree)
		return err
	}); err != nil {
		return nil, err
	}
	var up *Upload
	if err := timed("split", func() error {
		up, err = Split(ctx, cl, from, to, files, opts)
		return err
	}); err != nil {
		return nil, err
	}
	if err := timed("check", func() error {
		for _, f := range up.Fixes {
			if err := CheckApplies(ctx, oldTree, f.Patch); err != nil {
				return fmt.Errorf("fix %s (%s) against the source of %s: %w", f.Name(), f.Summary, from, err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if opts.Triage {
		if err := timed("triage", func() error {
			return TriageUpload(up, TriageOptions{Tree: oldTree, Config: opts.Config})
		}); err != nil {
			return nil, err
		}
	}
	up.Steps = steps
	return up, nil
}

// checkVersions makes sure from and to are Debian versions of one series
// and to is the newer.
func checkVersions(from, to string) error {
	for _, v := range []struct{ name, v string }{{"from", from}, {"to", to}} {
		if err := vuln.ValidateVersion(vuln.SchemeDeb, v.v); err != nil || len(strings.SplitN(v.v, ".", 3)) < 3 {
			return fmt.Errorf("%s version %q: want a linux-source package version such as 6.1.192-3", v.name, v.v)
		}
	}
	if cmpDeb(from, to) >= 0 {
		return fmt.Errorf("upload %s is not newer than %s", to, from)
	}
	return nil
}

// cmpDeb compares two Debian versions checked by checkVersions or the
// changelog parser.
func cmpDeb(a, b string) int {
	c, _ := vuln.CompareVersions(vuln.SchemeDeb, a, b)
	return c
}

// packageChangelog reads /usr/share/doc/<pkg>/changelog.Debian.gz from the
// cached linux-source package of version (build.Source downloaded it).
func packageChangelog(ctx context.Context, cache, version string) (string, error) {
	series := strings.Join(strings.SplitN(version, ".", 3)[:2], ".")
	pkg := "linux-source-" + series
	m, _ := filepath.Glob(filepath.Join(cache, "debs", pkg+"_"+version+"_*.deb"))
	if len(m) == 0 {
		return "", fmt.Errorf("no %s %s package in %s/debs", pkg, version, cache)
	}
	var out, stderr bytes.Buffer
	script := `set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO -f - "$2" | gzip -dc`
	cmd := exec.CommandContext(ctx, "bash", "-c", script, "changelog", m[0], "./usr/share/doc/"+pkg+"/changelog.Debian.gz")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("read the changelog of %s: %w: %s", m[0], err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// Split assigns the source difference files (from's tree to to's) to the
// changelog items of every upload after from up to to, and takes the fixes
// whose kernel CNA record names a stable commit from opts.Git.
//
// Attribution: when the uploads name one item, every file is its. With
// several, a file goes to the item whose subsystem prefix ("nfsd:",
// "io_uring/io-wq:", "smb: client:") best matches its path; a file no
// item matches, or two match equally, is left in Upload.Unattributed.
func Split(ctx context.Context, cl *vuln.DebianChangelog, from, to string, files []FileDiff, opts Options) (*Upload, error) {
	branch := opts.Branch
	if branch == "" {
		branch = strings.Join(strings.SplitN(to, ".", 3)[:2], ".")
	}
	if err := checkVersions(from, to); err != nil {
		return nil, err
	}
	up := &Upload{Version: to, Previous: from}
	type item struct {
		upload string
		change vuln.Change
	}
	var items []item
	found := false
	// The changelog is newest first; fixes are numbered oldest first.
	for i := len(cl.Uploads) - 1; i >= 0; i-- {
		u := cl.Uploads[i]
		if u.Source != "linux" || cmpDeb(u.Version, from) <= 0 || cmpDeb(u.Version, to) > 0 {
			continue
		}
		if u.Version == to {
			found = true
			up.Date = u.Date
		}
		for _, c := range u.Changes {
			items = append(items, item{u.Version, c})
		}
	}
	if !found {
		return nil, fmt.Errorf("%s has no entry for linux %s", cl.File, to)
	}

	var pool []FileDiff
	for _, f := range files {
		if f.Binary {
			up.Skipped = append(up.Skipped, f.Path)
			continue
		}
		pool = append(pool, f)
	}
	fixes := make([]*Fix, len(items))
	for i, it := range items {
		fixes[i] = &Fix{Upload: it.upload, Index: i + 1, Summary: it.change.Text, CVEs: it.change.CVEs, Origin: OriginSource}
	}
	// Stable commits first: the files they touch leave the pool.
	if opts.Git != "" {
		for _, f := range fixes {
			for _, cve := range f.CVEs {
				c, ok, err := cnaCommit(opts.CNA, cve, branch)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
				patch, _, err := gitPatch(ctx, opts.Git, c.Commit)
				if err != nil {
					return nil, fmt.Errorf("%s (%s, %s per %s): %w", f.Summary, cve, c.Version, c.File, err)
				}
				f.Origin, f.Commit, f.CNA, f.Patch = OriginGit, c.Commit, c.File, patch
				f.Files = patchFiles(patch)
				break
			}
		}
		taken := map[string]bool{}
		for _, f := range fixes {
			for _, p := range f.Files {
				taken[p] = true
			}
		}
		var rest []FileDiff
		for _, d := range pool {
			if !taken[d.Path] {
				rest = append(rest, d)
			}
		}
		pool = rest
	}
	var open []*Fix // the items the source difference is split between
	for _, f := range fixes {
		if f.Origin == OriginSource {
			open = append(open, f)
		}
	}
	var unattributed []FileDiff
	for _, d := range pool {
		var to *Fix
		if len(open) == 1 {
			to = open[0]
		} else {
			best, tie := 0, false
			for _, f := range open {
				s := score(f.Summary, d.Path)
				switch {
				case s > best:
					best, tie, to = s, false, f
				case s == best && s > 0:
					tie = true
				}
			}
			if tie {
				to = nil
			}
		}
		if to == nil {
			unattributed = append(unattributed, d)
			continue
		}
		to.Files = append(to.Files, d.Path)
		to.Patch += d.Text
	}
	for _, f := range fixes {
		if len(f.Files) == 0 {
			up.Unplaced = append(up.Unplaced, f.Summary)
			continue
		}
		up.Fixes = append(up.Fixes, *f)
	}
	if len(unattributed) > 0 {
		u := &Fix{Upload: to, Summary: "changes no changelog item names", Origin: OriginSource}
		for _, d := range unattributed {
			u.Files = append(u.Files, d.Path)
			u.Patch += d.Text
		}
		up.Unattributed = u
	}
	return up, nil
}

// score says how well a changelog item's subsystem prefix matches a file
// path: 2 for each prefix word that is a folder or the file's stem, 1 for
// one that is part of a folder or stem name. "nfsd: ..." matches
// fs/nfsd/nfs4state.c with 2; "HID: sony: ..." matches
// drivers/hid/hid-sony.c with 3.
func score(summary, path string) int {
	words := prefixWords(summary)
	if len(words) == 0 {
		return 0
	}
	var names []string
	for _, c := range strings.Split(strings.ToLower(path), "/") {
		names = append(names, norm(strings.TrimSuffix(c, filepath.Ext(c))))
	}
	s := 0
	for _, w := range words {
		best := 0
		for _, n := range names {
			switch {
			case n == w:
				best = 2
			case best < 1 && len(w) >= 3 && strings.Contains(n, w):
				best = 1
			}
		}
		s += best
	}
	return s
}

// prefixWords are the subsystem words before an item's description:
// "smb: client: fix OOB read" -> [smb client].
func prefixWords(summary string) []string {
	parts := strings.Split(summary, ": ")
	var words []string
	for _, p := range parts[:len(parts)-1] {
		if strings.Contains(p, " ") && len(words) > 0 {
			break // a colon inside the description
		}
		for _, w := range strings.FieldsFunc(strings.ToLower(p), func(r rune) bool { return r == '/' || r == ',' || r == ' ' }) {
			words = append(words, norm(w))
		}
	}
	return words
}

func norm(s string) string { return strings.ReplaceAll(s, "-", "_") }

// patchFiles are the files a unified diff changes (its +++ b/ paths, or
// --- a/ for a removed file), in order, without duplicates.
func patchFiles(patch string) []string {
	var out []string
	seen := map[string]bool{}
	var minus string
	for _, line := range strings.Split(patch, "\n") {
		switch {
		case strings.HasPrefix(line, "--- "):
			minus = strings.Fields(line[4:] + " x")[0]
		case strings.HasPrefix(line, "+++ "):
			p := strings.Fields(line[4:] + " x")[0]
			if p == "/dev/null" {
				p = minus
			}
			p = strings.TrimPrefix(strings.TrimPrefix(p, "b/"), "a/")
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// CheckApplies tells whether patch applies to the source tree without fuzz
// (patch -p1 --dry-run --fuzz=0); the error wraps ErrDoesNotApply and
// quotes patch(1).
func CheckApplies(ctx context.Context, tree, patch string) error {
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err != nil {
		return fmt.Errorf("kernel source %s: no Makefile: %w", tree, err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "patch", "-p1", "--dry-run", "--fuzz=0", "-f", "-s", "-d", tree)
	cmd.Stdin = strings.NewReader(patch)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w to %s: %s", ErrDoesNotApply, tree, lastLines(out.String(), 6))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
