package factory

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrCommitNotFound is wrapped when the configured git repository lacks
// the commit a kernel CNA record names.
var ErrCommitNotFound = errors.New("commit not in the git repository")

// cnaFix is the fixing commit a kernel CNA record names for one stable
// branch.
type cnaFix struct {
	CVE     string
	Commit  string
	Version string // the stable release that carries it: "6.1.190"
	File    string // the .dyad file it was read from
}

// cnaCommit returns the commit that fixes cve in the stable branch (e.g.
// "6.1") according to the kernel CNA record's .dyad file under dir (the
// CNA repository's layout, cve/published/YEAR/CVE-ID.dyad, or any folder
// holding the files). found is false when there is no record or it names
// no fix in the branch.
func cnaCommit(dir, cve, branch string) (fix cnaFix, found bool, err error) {
	parts := strings.Split(cve, "-")
	if len(parts) != 3 {
		return cnaFix{}, false, fmt.Errorf("CVE id %q: want CVE-YYYY-NNNN", cve)
	}
	year := parts[1]
	var file string
	for _, p := range []string{
		filepath.Join(dir, "cve", "published", year, cve+".dyad"),
		filepath.Join(dir, "published", year, cve+".dyad"),
		filepath.Join(dir, year, cve+".dyad"),
		filepath.Join(dir, cve+".dyad"),
	} {
		if _, err := os.Stat(p); err == nil {
			file = p
			break
		}
	}
	if file == "" {
		return cnaFix{}, false, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return cnaFix{}, false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 4 {
			return cnaFix{}, false, fmt.Errorf("%s:%d: want vulnerable_version:sha:fixed_version:sha, got %q", file, n, line)
		}
		if strings.HasPrefix(f[2], branch+".") && isCommitID(f[3]) {
			return cnaFix{CVE: cve, Commit: f[3], Version: f[2], File: file}, true, nil
		}
	}
	return cnaFix{}, false, sc.Err()
}

func isCommitID(s string) bool {
	return len(s) >= 12 && len(s) <= 40 && strings.Trim(s, "0123456789abcdef") == ""
}

// gitPatch returns commit's change in repo as a unified diff for patch -p1,
// and the commit's subject line.
func gitPatch(ctx context.Context, repo, commit string) (patch, subject string, err error) {
	if _, err := os.Stat(repo); err != nil {
		return "", "", fmt.Errorf("git repository %s: %w (set --git to a clone of the stable kernel)", repo, err)
	}
	git := func(args ...string) (string, error) {
		var out, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.Env = append(os.Environ(), "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1")
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return out.String(), nil
	}
	if _, err := git("rev-parse", "--git-dir"); err != nil {
		return "", "", fmt.Errorf("%s is not a git repository: %w", repo, err)
	}
	if _, err := git("cat-file", "-e", commit+"^{commit}"); err != nil {
		return "", "", fmt.Errorf("commit %s is not in git repository %s: %w (fetch the stable branch into it: git -C %s fetch <stable remote> linux-6.1.y)", commit, repo, ErrCommitNotFound, repo)
	}
	subject, err = git("log", "-1", "--format=%s", commit)
	if err != nil {
		return "", "", err
	}
	patch, err = git("show", "--format=", "--patch", "--no-color", "--no-ext-diff", "--first-parent", commit)
	if err != nil {
		return "", "", err
	}
	if strings.TrimSpace(patch) == "" {
		return "", "", fmt.Errorf("commit %s in %s changes no file", commit, repo)
	}
	return patch, strings.TrimSpace(subject), nil
}
