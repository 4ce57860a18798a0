package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/vmtest"
)

// TestCorpusFiles: every fix of the corpus is described completely and
// its patch parses.
func TestCorpusFiles(t *testing.T) {
	fixes, err := loadCorpus(filepath.Join("..", "..", "..", "corpus"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fixes {
		if f.Expect == "build" && !strings.HasPrefix(f.Kernel, "6.1.0-") {
			t.Errorf("%s: kernel %q, want a Debian 6.1 ABI", f.Name, f.Kernel)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		fix  Fix
		want string
	}{
		{Fix{Name: "a", Kernel: "k", Origin: "o", Expect: "build", Functions: []string{"f"}, Check: "true"}, ""},
		{Fix{Name: "a", Kernel: "k", Origin: "o", Expect: "refuse", Rule: "data-changed", Symbol: "s"}, ""},
		{Fix{Name: "a", Kernel: "k", Origin: "o", Expect: "build"}, "functions: required"},
		{Fix{Name: "a", Kernel: "k", Origin: "o", Expect: "refuse"}, "rule and symbol"},
		{Fix{Name: "A b", Kernel: "k", Origin: "o", Expect: "maybe"}, "expect"},
		{Fix{Name: "a", Expect: "build", Functions: []string{"f"}, Check: "true"}, "origin: required"},
	} {
		err := tc.fix.validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("validate(%+v) = %v, want %q", tc.fix, err, tc.want)
		}
	}
}

// TestCorpusSubset runs the fixes marked "subset" (what make test runs):
// built, applied in a guest, checked with the tracer on the patch module,
// reverted, module fixes with the module loaded before and after.
func TestCorpusSubset(t *testing.T) {
	vmtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var log bytes.Buffer
	var out bytes.Buffer
	err := run(ctx, []string{"-dir", filepath.Join("..", "..", "..", "corpus"), "-report", "", "-subset"}, &out, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^corpus: (\d+)/(\d+) built, loaded and checked, (\d+)/(\d+) refused, 0 oopses\n$`)
	m := re.FindStringSubmatch(out.String())
	if m == nil || m[1] != m[2] || m[3] != m[4] {
		t.Errorf("summary = %q, want every fix of the subset built and checked or refused, no oops", out.String())
	}
}
