package factory

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/internal/kpkg"
)

// TestTriageCorpus checks the triage's verdict on every fix of the corpus
// (corpus/*/fix.json) against its known outcome: a fix the builder must
// build is a candidate, one it must refuse is refused by the same rule
// and, for data, __init code and exports, naming the same symbol. It needs
// the fixes' kernel sources and configurations (cached by the corpus and
// builder tests; downloaded on first use), so it skips under -short.
func TestTriageCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the linux-source trees of the corpus' kernels")
	}
	ctx := context.Background()
	cache, err := kpkg.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob("../corpus/*/fix.json")
	if err != nil || len(dirs) < 30 {
		t.Fatalf("corpus: %d fixes, %v", len(dirs), err)
	}
	triagers := map[string]*Triager{}
	triager := func(kernel string) *Triager {
		if tr := triagers[kernel]; tr != nil {
			return tr
		}
		k, err := kpkg.Fetch(ctx, kernel, nil)
		if err != nil {
			t.Fatal(err)
		}
		tree, err := build.Source(ctx, cache, k.PackageVersion, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTriager(TriageOptions{Tree: tree, Config: k.Config})
		if err != nil {
			t.Fatal(err)
		}
		triagers[kernel] = tr
		return tr
	}
	counts := map[string]int{}
	for _, f := range dirs {
		name := filepath.Base(filepath.Dir(f))
		var fix struct {
			Kernel, Expect, Rule, Symbol string
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &fix); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		patch, err := os.ReadFile(filepath.Join(filepath.Dir(f), "fix.patch"))
		if err != nil {
			t.Fatal(err)
		}
		got := triager(fix.Kernel).Fix(string(patch))
		counts[fix.Expect+" "+got.Verdict]++
		switch fix.Expect {
		case "build":
			if got.Verdict != VerdictCandidate {
				t.Errorf("%s: triage = %s %v, want a candidate (the builder builds it)", name, got.Verdict, got.Reasons)
			}
		case "refuse":
			ok := false
			for _, r := range got.Reasons {
				sym := strings.TrimPrefix(fix.Symbol, "struct ")
				if r.Rule == fix.Rule && (fix.Rule == RuleNoFtrace || strings.TrimPrefix(r.Symbol, "struct ") == sym) {
					ok = true
				}
			}
			if got.Verdict != VerdictRefuse || !ok {
				t.Errorf("%s: triage = %s %v, want refused: %s %s", name, got.Verdict, got.Reasons, fix.Rule, fix.Symbol)
			}
		default:
			t.Errorf("%s: expect %q", name, fix.Expect)
		}
	}
	t.Logf("corpus: %v", counts)
}

// TestTriageRules: each rule on a small tree and configuration.
func TestTriageRules(t *testing.T) {
	tree := t.TempDir()
	files := map[string]string{
		"fs/foo/Makefile":       "obj-$(CONFIG_FOO) += foo.o\nfoo-y := main.o\nfoo-$(CONFIG_FOO_EXTRA) += extra.o\n",
		"fs/Makefile":           "obj-$(CONFIG_FOO) += foo/\nobj-$(CONFIG_BAR) += bar/\n",
		"fs/bar/Makefile":       "obj-y += bar.o\n",
		"kernel/trace/Makefile": "ccflags-remove-$(CONFIG_FUNCTION_TRACER) += $(CC_FLAGS_FTRACE)\nobj-y += ftrace.o\n",
		"kernel/Makefile":       "obj-y += trace/\n",
		"fs/foo/main.c": `// SPDX
#include <linux/module.h>

struct foo_ctx {
	int a;
	/* a comment */
	int b;
};

static const struct ctl_table foo_table[] = {
	{ .procname = "x", .proc_handler = proc_dointvec },
	{ }
};

static int foo_show(int x)
{
	return x + 1;
}

static int __init foo_init(void)
{
	return 0;
}
module_init(foo_init);
`,
		"fs/foo/extra.c":        "int extra(void)\n{\n\treturn 0;\n}\n",
		"fs/bar/bar.c":          "int bar(void)\n{\n\treturn 0;\n}\n",
		"kernel/trace/ftrace.c": "void ftrace_ops_init(int *ops)\n{\n\t*ops = 1;\n}\n",
		"include/linux/foo.h":   "#define FOO_MAX 4\nstatic inline int foo_max(void)\n{\n\treturn FOO_MAX;\n}\n",
		"config":                "CONFIG_X86=y\nCONFIG_FOO=m\n# CONFIG_FOO_EXTRA is not set\nCONFIG_FUNCTION_TRACER=y\n",
	}
	for p, s := range files {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := NewTriager(TriageOptions{Tree: tree, Config: filepath.Join(tree, "config")})
	if err != nil {
		t.Fatal(err)
	}
	diff := func(path string, oldStart int, lines ...string) string {
		old, nw := 0, 0
		for _, l := range lines {
			if l[0] != '+' {
				old++
			}
			if l[0] != '-' {
				nw++
			}
		}
		return "--- a/" + path + "\n+++ b/" + path + "\n@@ -" + itoa(oldStart) + "," + itoa(old) + " +" + itoa(oldStart) + "," + itoa(nw) + " @@\n" + strings.Join(lines, "\n") + "\n"
	}
	tests := []struct {
		name, patch, verdict, rule, symbol string
	}{
		{"function", diff("fs/foo/main.c", 16, "-\treturn x + 1;", "+\treturn x + 2;"), VerdictCandidate, NoteFunction, "foo_show"},
		{"struct member", diff("fs/foo/main.c", 5, " \tint a;", "+\tint c;", " \t/* a comment */"), VerdictRefuse, RuleDataChanged, "struct foo_ctx"},
		{"comment in a struct", diff("fs/foo/main.c", 6, "-\t/* a comment */", "+\t/* another comment */"), VerdictCandidate, "", ""},
		{"initialiser", diff("fs/foo/main.c", 11, "-\t{ .procname = \"x\", .proc_handler = proc_dointvec },", "+\t{ .procname = \"x\", .proc_handler = proc_dointvec_minmax },"), VerdictRefuse, RuleDataChanged, "foo_table"},
		{"__init", diff("fs/foo/main.c", 21, "-\treturn 0;", "+\treturn 1;"), VerdictRefuse, RuleInitChanged, "foo_init"},
		{"export", diff("fs/foo/main.c", 18, " }", "+EXPORT_SYMBOL(foo_show);", " "), VerdictRefuse, RuleExportChanged, "foo_show"},
		{"new function", diff("fs/foo/main.c", 19, " ", "+static int foo_new(void)", "+{", "+\treturn 3;", "+}", "+", " static int __init foo_init(void)"), VerdictCandidate, NoteFunction, "foo_new"},
		{"not built", diff("fs/foo/extra.c", 3, "-\treturn 0;", "+\treturn 1;"), VerdictNothing, RuleNotBuilt, ""},
		{"folder not built", diff("fs/bar/bar.c", 3, "-\treturn 0;", "+\treturn 1;"), VerdictNothing, RuleNotBuilt, ""},
		{"no ftrace", diff("kernel/trace/ftrace.c", 3, "-\t*ops = 1;", "+\t*ops = 2;"), VerdictRefuse, RuleNoFtrace, "ftrace_ops_init"},
		{"header macro", diff("include/linux/foo.h", 1, "-#define FOO_MAX 4", "+#define FOO_MAX 8"), VerdictCandidate, NoteHeader, "FOO_MAX"},
		{"documentation", diff("Documentation/foo.rst", 1, "-x", "+y"), VerdictNothing, RuleNotCode, ""},
		{"other arch", diff("arch/arm64/kernel/foo.c", 1, "-x", "+y"), VerdictNothing, RuleOtherArch, ""},
		{"kconfig", diff("fs/foo/Kconfig", 1, "-x", "+y"), VerdictRefuse, RuleBuildSystem, ""},
		{"docs and code", diff("Documentation/foo.rst", 1, "-x", "+y") + diff("fs/foo/main.c", 16, "-\treturn x + 1;", "+\treturn x + 2;"), VerdictCandidate, NoteFunction, "foo_show"},
	}
	for _, tt := range tests {
		got := tr.Fix(tt.patch)
		found := tt.rule == ""
		for _, r := range append(got.Reasons, got.Notes...) {
			if r.Rule == tt.rule && (tt.symbol == "" || r.Symbol == tt.symbol) {
				found = true
			}
		}
		if got.Verdict != tt.verdict || !found {
			t.Errorf("%s: Fix() = %s, reasons %v, notes %v; want %s with %s %s", tt.name, got.Verdict, got.Reasons, got.Notes, tt.verdict, tt.rule, tt.symbol)
		}
	}
	// The module note names the module the composite object goes into.
	got := tr.Fix(tests[0].patch)
	if !strings.Contains(joinReasons(got.Notes), "module foo") {
		t.Errorf("notes %v, want the module foo", got.Notes)
	}
}

func joinReasons(rs []TriageReason) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.String())
	}
	return strings.Join(s, "; ")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
