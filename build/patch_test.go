package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/testenv"
)

func TestParseHunks(t *testing.T) {
	out := `checking file fs/proc/cmdline.c
Hunk #1 succeeded at 6 (offset 1 line).
Hunk #2 succeeded at 21 with fuzz 1 (offset -12 lines).
checking file 'fs/a b.c'
Hunk #1 succeeded at 40 with fuzz 2.
patching file kernel/fork.c
Hunk #3 FAILED at 20.
`
	want := []Hunk{
		{Patch: "fix.patch", File: "fs/proc/cmdline.c", Number: 1, Line: 6, Offset: 1},
		{Patch: "fix.patch", File: "fs/proc/cmdline.c", Number: 2, Line: 21, Offset: -12, Fuzz: 1},
		{Patch: "fix.patch", File: "fs/a b.c", Number: 1, Line: 40, Fuzz: 2},
	}
	if diff := cmp.Diff(want, parseHunks("fix.patch", out)); diff != "" {
		t.Errorf("parseHunks (-want +got):\n%s", diff)
	}
}

// numbered returns lines "line 1" to "line n", with extra lines inserted
// before line at (0: none).
func numbered(n, at int, extra ...string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i == at {
			for _, e := range extra {
				b.WriteString(e + "\n")
			}
		}
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

// Two hunks against numbered(40, 0): line 8 and line 23 change.
const twoHunks = `--- a/a.c
+++ b/a.c
@@ -5,7 +5,7 @@
 line 5
 line 6
 line 7
-line 8
+line eight
 line 9
 line 10
 line 11
@@ -20,7 +20,7 @@
 line 20
 line 21
 line 22
-line 23
+line twenty-three
 line 24
 line 25
 line 26
`

// A hunk that applies at an offset is applied and reported; one that
// applies only with fuzz (its context differs from the tree) is refused,
// leaving the tree untouched, unless fuzz is allowed, and then reported.
func TestApplyPatchOffsetAndFuzz(t *testing.T) {
	testenv.NeedTools(t, "patch")
	shifted := numbered(40, 1, "added at the top")
	fuzzy := strings.Replace(shifted, "line 26\n", "line 26 edited\n", 1)
	tests := []struct {
		name      string
		tree      string
		allowFuzz bool
		want      []Hunk
		wantErr   error
	}{
		{name: "exact", tree: numbered(40, 0)},
		{name: "offset", tree: shifted, want: []Hunk{
			{File: "a.c", Number: 1, Line: 6, Offset: 1},
			{File: "a.c", Number: 2, Line: 21, Offset: 1},
		}},
		{name: "fuzz refused", tree: fuzzy, wantErr: ErrPatchFuzz},
		{name: "fuzz allowed", tree: fuzzy, allowFuzz: true, want: []Hunk{
			{File: "a.c", Number: 1, Line: 6, Offset: 1},
			{File: "a.c", Number: 2, Line: 21, Offset: 1, Fuzz: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fix := filepath.Join(t.TempDir(), "fix.patch")
			writeFiles(t, dir, map[string]string{"a.c": tt.tree})
			writeFiles(t, filepath.Dir(fix), map[string]string{"fix.patch": twoHunks})
			got, err := applyPatch(context.Background(), dir, fix, tt.allowFuzz)
			after, _ := os.ReadFile(filepath.Join(dir, "a.c"))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("applyPatch = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "a.c hunk #2 applied at line 21 (offset +1, fuzz 1)") || !strings.Contains(err.Error(), "--allow-fuzz") {
					t.Errorf("applyPatch error = %q, want it to name hunk #2, its fuzz and --allow-fuzz", err)
				}
				if string(after) != tt.tree {
					t.Errorf("a.c after a refused fix = %q, want it untouched", after)
				}
				return
			}
			if err != nil {
				t.Fatalf("applyPatch = %v", err)
			}
			for i := range tt.want {
				tt.want[i].Patch = fix
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("applyPatch hunks (-want +got):\n%s", diff)
			}
			if !strings.Contains(string(after), "line eight\n") || !strings.Contains(string(after), "line twenty-three\n") {
				t.Errorf("a.c after applyPatch = %q, want both hunks applied", after)
			}
		})
	}
}

// ParsePatch reads outside input: it must not panic, and what it accepts
// stays inside the tree.
func FuzzParsePatch(f *testing.F) {
	f.Add([]byte(twoHunks))
	f.Add([]byte("--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n ctx\n--- x\n+++ y\n ctx\n"))
	f.Add([]byte("--- /dev/null\n+++ b/fs/new.c\n@@ -0,0 +1 @@\n+x\n\\ No newline at end of file\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		changes, err := ParsePatch(data)
		if err != nil {
			return
		}
		for _, c := range changes {
			if c.Path == "" || c.Path == "." || strings.Contains(c.Path, "..") || filepath.IsAbs(c.Path) {
				t.Errorf("ParsePatch accepted path %q", c.Path)
			}
		}
	})
}
