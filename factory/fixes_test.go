package factory

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/internal/testenv"
	"github.com/stent-dev/stent/vuln"
)

func TestScore(t *testing.T) {
	tests := []struct {
		summary, path string
		want          int
	}{
		{"nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)", "fs/nfsd/nfs4state.c", 2},
		{"nfsd: preflight SEQUENCE replies", "fs/ext4/mballoc.c", 0},
		{"HID: sony: fix UAF of ghl_poke_timer", "drivers/hid/hid-sony.c", 3},
		{"io_uring/io-wq: don't lose the signal", "io_uring/io-wq.c", 4},
		{"smb: client: fix OOB read/write from unvalidated DataOffset in coalesce_t2()", "fs/smb/client/cifssmb.c", 4},
		{"New upstream stable update", "fs/nfsd/nfs4state.c", 0},
	}
	for _, tt := range tests {
		if got := score(tt.summary, tt.path); got != tt.want {
			t.Errorf("score(%q, %q) = %d, want %d", tt.summary, tt.path, got, tt.want)
		}
	}
}

func TestParseTreeDiff(t *testing.T) {
	out := `diff -ruN --no-dereference a/fs/x.c b/fs/x.c
--- a/fs/x.c	2026-11-06 18:15:16.000000000 +0000
+++ b/fs/x.c	2026-11-26 17:12:56.000000000 +0000
@@ -1 +1 @@
-a
+b
diff -ruN --no-dereference a/fw.bin b/fw.bin
Binary files a/fw.bin and b/fw.bin differ
diff -ruN --no-dereference a/new.c b/new.c
--- a/new.c	1970-01-01 00:00:00.000000000 +0000
+++ b/new.c	2026-11-26 17:12:56.000000000 +0000
@@ -0,0 +1 @@
+c
`
	got, err := parseTreeDiff(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []FileDiff{
		{Path: "fs/x.c", Text: strings.Join(strings.SplitAfter(out, "\n")[:6], "")},
		{Path: "fw.bin", Binary: true},
		{Path: "new.c", Text: strings.Join(strings.SplitAfter(out, "\n")[8:13], "")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseTreeDiff mismatch (-want +got):\n%s", diff)
	}
	if _, err := parseTreeDiff("garbage\n"); err == nil {
		t.Errorf("parseTreeDiff(garbage) = nil error, want one")
	}
}

// writeTree makes a small source tree: files maps paths to contents.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const twoFixChangelog = `linux (6.1.192-3) bookworm-security; urgency=high

  * nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)
  * ext4: fix NULL folio dereference in mballoc (CVE-2026-99400)
  * debian/control: update Vcs fields

 -- A B <a@b.c>  Thu, 26 Nov 2026 18:12:56 +0100

linux (6.1.192-2) bookworm-security; urgency=high

  * ext4: an older fix (CVE-2026-1111)

 -- A B <a@b.c>  Mon, 16 Nov 2026 11:17:40 +0100
`

var (
	oldFiles = map[string]string{
		"Makefile":            "all:\n",
		"fs/nfsd/nfs4state.c": "int seq(void)\n{\n\treturn 0;\n}\n",
		"fs/ext4/mballoc.c":   "int mb(void)\n{\n\treturn 0;\n}\n",
		"lib/other.c":         "int other;\n",
	}
	newFiles = map[string]string{
		"Makefile":            "all:\n",
		"fs/nfsd/nfs4state.c": "int seq(void)\n{\n\treturn 1;\n}\n",
		"fs/ext4/mballoc.c":   "int mb(void)\n{\n\treturn 2;\n}\n",
		"lib/other.c":         "int other = 3;\n",
	}
)

// TestSplitTwoFixes: an upload naming two fixes gets its difference split
// between them by path, each with its CVEs; a file neither claims is kept
// apart, and the item that changes no source is listed as unplaced.
func TestSplitTwoFixes(t *testing.T) {
	testenv.NeedTools(t, "diff", "patch")
	ctx := context.Background()
	dir := t.TempDir()
	oldTree, newTree := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	writeTree(t, oldTree, oldFiles)
	writeTree(t, newTree, newFiles)
	files, err := DiffTrees(ctx, oldTree, newTree)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := vuln.ParseDebianChangelog("changelog", strings.NewReader(twoFixChangelog))
	if err != nil {
		t.Fatal(err)
	}
	up, err := Split(ctx, cl, "6.1.192-2", "6.1.192-3", files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	type short struct {
		Index int
		CVEs  []string
		Files []string
	}
	var got []short
	for _, f := range up.Fixes {
		got = append(got, short{f.Index, f.CVEs, f.Files})
		if err := CheckApplies(ctx, oldTree, f.Patch); err != nil {
			t.Errorf("fix %d: CheckApplies(old tree) = %v", f.Index, err)
		}
	}
	want := []short{
		{1, []string{"CVE-2026-99362"}, []string{"fs/nfsd/nfs4state.c"}},
		{2, []string{"CVE-2026-99400"}, []string{"fs/ext4/mballoc.c"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Split fixes mismatch (-want +got):\n%s", diff)
	}
	if up.Unattributed == nil || !cmp.Equal(up.Unattributed.Files, []string{"lib/other.c"}) {
		t.Errorf("Split unattributed = %+v, want lib/other.c", up.Unattributed)
	}
	if !cmp.Equal(up.Unplaced, []string{"debian/control: update Vcs fields"}) {
		t.Errorf("Split unplaced = %q", up.Unplaced)
	}
	if !strings.Contains(up.Fixes[0].Patch, "+\treturn 1;") || strings.Contains(up.Fixes[0].Patch, "return 2") {
		t.Errorf("fix 1's patch holds the wrong difference:\n%s", up.Fixes[0].Patch)
	}

	// The same fix does not apply to a tree whose code differs.
	other := filepath.Join(dir, "other")
	writeTree(t, other, map[string]string{"Makefile": "all:\n", "fs/nfsd/nfs4state.c": "int seq(void)\n{\n\treturn 7;\n}\n"})
	if err := CheckApplies(ctx, other, up.Fixes[0].Patch); !errors.Is(err, ErrDoesNotApply) {
		t.Errorf("CheckApplies(changed tree) = %v, want ErrDoesNotApply", err)
	}

	// Bad versions are refused before anything is read.
	if _, err := Split(ctx, cl, "6.1.192-3", "6.1.192-2", files, Options{}); err == nil || !strings.Contains(err.Error(), "not newer") {
		t.Errorf("Split(backwards) = %v, want \"not newer\"", err)
	}
	if _, err := Split(ctx, cl, "6.1.192-2", "6.1.192-9", files, Options{}); err == nil || !strings.Contains(err.Error(), "no entry for linux 6.1.192-9") {
		t.Errorf("Split(unknown upload) = %v, want \"no entry\"", err)
	}
}

// gitRepo makes a git repository whose second commit changes
// fs/nfsd/nfs4state.c as the upload does, and returns it and the commit.
func gitRepo(t *testing.T, tree map[string]string, change map[string]string) (string, string) {
	t.Helper()
	testenv.NeedTools(t, "git")
	repo := t.TempDir()
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=T", "-c", "user.email=t@e", "-c", "commit.gpgsign=false"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	writeTree(t, repo, tree)
	git("add", "-A")
	git("commit", "-q", "-m", "base")
	writeTree(t, repo, change)
	git("commit", "-q", "-a", "-m", "nfsd: preflight SEQUENCE replies")
	return repo, git("rev-parse", "HEAD")
}

// TestSplitGit: a fix whose kernel CNA record names a 6.1 commit is taken
// from the git repository; a commit the repository lacks is a clear error.
func TestSplitGit(t *testing.T) {
	testenv.NeedTools(t, "diff", "patch")
	ctx := context.Background()
	dir := t.TempDir()
	oldTree, newTree := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	writeTree(t, oldTree, oldFiles)
	writeTree(t, newTree, newFiles)
	// The stable commit also adds a comment the Debian upload does not have.
	repo, commit := gitRepo(t, oldFiles, map[string]string{"fs/nfsd/nfs4state.c": "int seq(void)\n{\n\t/* stable */\n\treturn 1;\n}\n"})
	cna := filepath.Join(dir, "cna")
	writeTree(t, cna, map[string]string{
		"cve/published/2026/CVE-2026-99362.dyad": "# dyad\n5.17:40452ffca3c1a0f2994e826f9fa213b107f1a2d4:6.1.193:" + commit + "\n5.17:40452ffca3c1a0f2994e826f9fa213b107f1a2d4:6.12.94:86ab00cf81d44b675bb23db62b88fd76c8ac8cea\n",
	})
	files, err := DiffTrees(ctx, oldTree, newTree)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := vuln.ParseDebianChangelog("changelog", strings.NewReader(twoFixChangelog))
	if err != nil {
		t.Fatal(err)
	}
	up, err := Split(ctx, cl, "6.1.192-2", "6.1.192-3", files, Options{Git: repo, CNA: cna})
	if err != nil {
		t.Fatal(err)
	}
	f := up.Fixes[0]
	if f.Origin != OriginGit || f.Commit != commit || !cmp.Equal(f.Files, []string{"fs/nfsd/nfs4state.c"}) || !strings.Contains(f.Patch, "/* stable */") {
		t.Errorf("fix 1 = %+v, want commit %s from git", f, commit)
	}
	if err := CheckApplies(ctx, oldTree, f.Patch); err != nil {
		t.Errorf("CheckApplies(stable commit) = %v", err)
	}
	if up.Fixes[1].Origin != OriginSource {
		t.Errorf("fix 2 origin = %s, want %s (its CVE has no record)", up.Fixes[1].Origin, OriginSource)
	}

	// A record naming a commit the repository lacks.
	writeTree(t, cna, map[string]string{
		"cve/published/2026/CVE-2026-99362.dyad": "5.17:40452ffca3c1a0f2994e826f9fa213b107f1a2d4:6.1.193:1111111111111111111111111111111111111111\n",
	})
	_, err = Split(ctx, cl, "6.1.192-2", "6.1.192-3", files, Options{Git: repo, CNA: cna})
	if !errors.Is(err, ErrCommitNotFound) || !strings.Contains(err.Error(), "1111111111111111111111111111111111111111") || !strings.Contains(err.Error(), "CVE-2026-99362") {
		t.Errorf("Split(missing commit) = %v, want ErrCommitNotFound naming the commit and CVE", err)
	}
	if _, err := Split(ctx, cl, "6.1.192-2", "6.1.192-3", files, Options{Git: filepath.Join(dir, "nope"), CNA: cna}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Split(missing repo) = %v, want an error naming it", err)
	}
}

// TestExtractDebian: Debian's 6.1.192-3 upload over 6.1.192-2 is one fix
// to fs/nfsd/nfs4state.c for CVE-2026-99362, from the real linux-source
// packages.
func TestExtractDebian(t *testing.T) {
	if testing.Short() {
		t.Skip("extracts two linux-source packages (about a minute without a warm cache)")
	}
	testenv.NeedTools(t, "diff", "patch", "dpkg-deb", "apt-get", "xz")
	ctx := context.Background()
	up, err := Extract(ctx, "6.1.192-2", "6.1.192-3", Options{Progress: testWriter{t}, Triage: true})
	if errors.Is(err, build.ErrSourceUnavailable) {
		testenv.Unavailable(t, "linux-source-6.1 packages: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(up.Fixes) != 1 {
		t.Fatalf("Extract found %d fixes, want 1: %+v", len(up.Fixes), up.Fixes)
	}
	f := up.Fixes[0]
	if !cmp.Equal(f.CVEs, []string{"CVE-2026-99362"}) || !cmp.Equal(f.Files, []string{"fs/nfsd/nfs4state.c"}) || f.Upload != "6.1.192-3" || f.Origin != OriginSource {
		t.Errorf("Extract fix = %+v, want CVE-2026-99362 in fs/nfsd/nfs4state.c from the source difference", f)
	}
	if !strings.Contains(f.Patch, "nfsd4_max_reply") {
		t.Errorf("fix patch lacks the new check:\n%s", f.Patch)
	}
	if up.Unattributed != nil || len(up.Skipped) > 0 {
		t.Errorf("Extract left unattributed %+v, skipped %q", up.Unattributed, up.Skipped)
	}
	if tr := f.Triage; tr == nil || tr.Verdict != VerdictCandidate || !strings.Contains(joinReasons(tr.Notes), "nfsd4_sequence") {
		t.Errorf("Extract fix triage = %+v, want a candidate changing nfsd4_sequence", tr)
	}
	for _, s := range up.Steps {
		t.Logf("step %s: %v", s.Name, s.Duration)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestParseMadison(t *testing.T) {
	out := ` linux-source-6.1 |  6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 linux-source-6.1 |  6.1.192-3 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 linux-source-6.1 |  6.1.192-3 | http://mirror/debian-security bookworm-security/main amd64 Packages
 linux-source-6.1 | 6.1.176-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
 linux-source-6.12 | 6.12.1-1 | http://deb.debian.org/debian trixie/main amd64 Packages
garbage
`
	want := []string{"6.1.192-3", "6.1.192-2", "6.1.176-1"}
	if got := parseMadison(out, "linux-source-6.1"); !cmp.Equal(got, want) {
		t.Errorf("parseMadison = %q, want %q", got, want)
	}
}
