package factory

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Triage: whether each fix of an upload can be a live patch, from the fix's
// difference, the source it applies to and the kernel's configuration,
// without building anything (stent factory fixes --triage). It looks where
// the builder would refuse (a struct's layout, a static initialiser, __init
// code, an export, code without ftrace) and where there is nothing to
// patch for this kernel build (documentation, tools, another architecture,
// code its configuration does not build). It is a static reading: a
// candidate may still be refused by the builder (what the compiler made of
// it decides), and it is checked against the corpus' known outcomes.

// Verdicts.
const (
	VerdictCandidate = "candidate" // code this kernel build runs changes, and nothing refuses it
	VerdictRefuse    = "refuse"    // a change a live patch cannot carry: for its CVEs the path is a reboot
	VerdictNothing   = "nothing"   // nothing this kernel build runs changes
)

// Triage rules. The first five are the builder's (elfdiff) rule names.
const (
	RuleDataChanged   = "data-changed"   // a struct's layout or a variable's initial value
	RuleInitChanged   = "init-changed"   // __init or __exit code or data, an initcall
	RuleExportChanged = "export-changed" // EXPORT_SYMBOL added, removed or changed
	RuleNoFtrace      = "no-ftrace"      // code built without ftrace (notrace, a tracer's folder, assembly)
	RuleBuildSystem   = "build-system"   // Kconfig, Makefile: the configuration or the objects change
	RuleNewObject     = "new-object"     // a new or removed source file: an object the kernel lacks
	RuleNotCode       = "not-code"       // Documentation/, tools/, scripts/, samples/, ...
	RuleOtherArch     = "other-arch"     // arch/<not this kernel's>/
	RuleNotBuilt      = "not-built"      // the kernel's configuration does not build the file
	// Notes, which do not make a fix a non-candidate.
	NoteHeader   = "header"   // a header's macro or inline: rebuild the objects that use it (stent build --object)
	NoteFunction = "function" // a function changed or added
	NoteModule   = "module"   // the file is built into a module
)

// TriageReason is one finding about one file.
type TriageReason struct {
	Rule   string `json:"rule"`
	File   string `json:"file"`
	Symbol string `json:"symbol,omitempty"`
	Detail string `json:"detail"`
}

func (r TriageReason) String() string {
	s := r.Rule + ": " + r.File
	if r.Symbol != "" {
		s += " " + r.Symbol
	}
	return s + ": " + r.Detail
}

// Triage is a fix's verdict: Reasons say why it is refused or has nothing
// to patch, Notes what a build will touch.
type Triage struct {
	Verdict string         `json:"verdict"`
	Reasons []TriageReason `json:"reasons,omitempty"`
	Notes   []TriageReason `json:"notes,omitempty"`
}

// TriageOptions say what a fix is triaged against.
type TriageOptions struct {
	// Tree is the kernel source the fix applies to (the earlier upload's).
	Tree string
	// Config is the kernel's configuration (/boot/config-<release>), for
	// which files are built and the architecture; "" takes x86 and every
	// file as built.
	Config string
}

// Triager triages fixes against one tree and configuration.
type Triager struct {
	tree      string
	config    map[string]string // CONFIG_X -> y, m or a value; nil: unknown
	arch      string
	makefiles map[string][]mkRule
}

// NewTriager reads the configuration.
func NewTriager(opts TriageOptions) (*Triager, error) {
	t := &Triager{tree: opts.Tree, arch: "x86", makefiles: map[string][]mkRule{}}
	if opts.Config != "" {
		cfg, err := readConfig(opts.Config)
		if err != nil {
			return nil, err
		}
		t.config = cfg
		for cfgName, arch := range map[string]string{"CONFIG_X86": "x86", "CONFIG_ARM64": "arm64", "CONFIG_ARM": "arm", "CONFIG_PPC": "powerpc", "CONFIG_S390": "s390", "CONFIG_RISCV": "riscv", "CONFIG_MIPS": "mips", "CONFIG_LOONGARCH": "loongarch"} {
			if cfg[cfgName] == "y" {
				t.arch = arch
			}
		}
	}
	return t, nil
}

func readConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel config: %w", err)
	}
	defer f.Close()
	cfg := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = strings.Trim(v, `"`)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernel config %s: %w", path, err)
	}
	if len(cfg) == 0 {
		return nil, fmt.Errorf("kernel config %s: no CONFIG_ lines (want a kernel's .config or /boot/config-<release>)", path)
	}
	return cfg, nil
}

// Fix triages one fix's patch.
func (t *Triager) Fix(patch string) Triage {
	var files []Triage
	for _, fd := range parsePatch(patch) {
		files = append(files, t.file(fd))
	}
	return merge(files)
}

// merge is the verdict of several files': refused when one is (its
// reasons), a candidate when one is, else nothing to patch (every file's
// reason). What does not decide the verdict is kept as a note.
func merge(files []Triage) Triage {
	out := Triage{Verdict: VerdictNothing}
	for _, f := range files {
		switch {
		case f.Verdict == VerdictRefuse:
			out.Verdict = VerdictRefuse
		case f.Verdict == VerdictCandidate && out.Verdict == VerdictNothing:
			out.Verdict = VerdictCandidate
		}
	}
	for _, f := range files {
		out.Notes = append(out.Notes, f.Notes...)
		if f.Verdict == out.Verdict {
			out.Reasons = append(out.Reasons, f.Reasons...)
		} else {
			out.Notes = append(out.Notes, f.Reasons...)
		}
	}
	return out
}

// fileDiff is one file's part of a patch.
type fileDiff struct {
	path     string
	old, new bool // the file exists before, after
	hunks    []hunk
}

type hunk struct {
	oldStart int
	lines    []string // ' ', '-', '+' lines
	old, new int      // lines still expected while parsing
}

var hunkRE = regexp.MustCompile(`^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@`)

// parsePatch splits a unified diff into files and hunks.
func parsePatch(patch string) []fileDiff {
	var out []fileDiff
	var cur *fileDiff
	var minus string
	lines := strings.Split(patch, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "--- ") && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "+++ "):
			minus = strings.Fields(l[4:] + " x")[0]
			plus := strings.Fields(lines[i+1][4:] + " x")[0]
			i++
			p := plus
			if p == "/dev/null" {
				p = minus
			}
			if j := strings.Index(p, "/"); j >= 0 && p != "/dev/null" {
				p = p[j+1:] // a/ or b/ or the tree's folder
			}
			out = append(out, fileDiff{path: p, old: minus != "/dev/null", new: plus != "/dev/null"})
			cur = &out[len(out)-1]
		case strings.HasPrefix(l, "@@ ") && cur != nil:
			m := hunkRE.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			start, _ := strconv.Atoi(m[1])
			h := hunk{oldStart: start, old: 1, new: 1}
			if m[2] != "" {
				h.old, _ = strconv.Atoi(m[2])
			}
			if m[4] != "" {
				h.new, _ = strconv.Atoi(m[4])
			}
			cur.hunks = append(cur.hunks, h)
		case cur != nil && len(cur.hunks) > 0:
			h := &cur.hunks[len(cur.hunks)-1]
			if h.old <= 0 && h.new <= 0 {
				continue
			}
			if l == "" {
				l = " " // an empty context line whose space was lost
			}
			switch l[0] {
			case ' ':
				h.old--
				h.new--
			case '-':
				h.old--
			case '+':
				h.new--
			default:
				continue
			}
			h.lines = append(h.lines, l)
		}
	}
	return out
}

var (
	notCodeDirs  = []string{"Documentation/", "tools/", "scripts/", "samples/", "LICENSES/", "usr/", "debian/", "rust/"}
	notCodeFiles = map[string]bool{"CREDITS": true, "MAINTAINERS": true, ".mailmap": true, "README": true, "COPYING": true}
	initWords    = []string{"__init", "__exit", "__initdata", "__initconst", "__exitdata", "__init_or_module", "__meminit", "__meminitdata"}
	initcallRE   = regexp.MustCompile(`^(module_init|module_exit|__setup|early_param|\w*initcall\w*|subsys_initcall\w*|module_\w+_driver|builtin_\w+_driver)$`)
)

// file triages one file's difference.
func (t *Triager) file(fd fileDiff) Triage {
	p := fd.path
	base := filepath.Base(p)
	nothing := func(rule, detail string) Triage {
		return Triage{Verdict: VerdictNothing, Reasons: []TriageReason{{Rule: rule, File: p, Detail: detail}}}
	}
	refuse := func(r ...TriageReason) Triage { return Triage{Verdict: VerdictRefuse, Reasons: r} }
	for _, d := range notCodeDirs {
		if strings.HasPrefix(p, d) {
			return nothing(RuleNotCode, "documentation or tooling, not kernel code")
		}
	}
	if notCodeFiles[p] || strings.Contains(p, "/selftests/") {
		return nothing(RuleNotCode, "documentation or tooling, not kernel code")
	}
	if rest, ok := strings.CutPrefix(p, "arch/"); ok {
		if a := strings.SplitN(rest, "/", 2)[0]; a != t.arch && !(t.arch == "x86" && a == "x86_64") {
			return nothing(RuleOtherArch, fmt.Sprintf("architecture %s; this kernel is %s", a, t.arch))
		}
	}
	ext := filepath.Ext(base)
	switch {
	case strings.HasPrefix(base, "Kconfig") || base == "Makefile" || base == "Kbuild" || ext == ".mk":
		return refuse(TriageReason{Rule: RuleBuildSystem, File: p, Detail: "changes the build (configuration or objects), which a live patch cannot"})
	case ext == ".c" || ext == ".h" || ext == ".S":
	case ext == ".dts" || ext == ".dtsi" || ext == ".rst" || ext == ".txt" || ext == ".yaml" || ext == ".py" || ext == ".sh" || ext == ".pl" || ext == "":
		return nothing(RuleNotCode, "not C code of the kernel")
	default:
		return nothing(RuleNotCode, "not C code of the kernel ("+ext+")")
	}
	var notes []TriageReason
	if ext != ".h" {
		built, module, why := t.built(p)
		if !built {
			return nothing(RuleNotBuilt, why)
		}
		if module != "" {
			notes = append(notes, TriageReason{Rule: NoteModule, File: p, Symbol: module, Detail: "built into module " + module})
		}
	}
	if ext == ".S" {
		return refuse(TriageReason{Rule: RuleNoFtrace, File: p, Detail: "assembly: its functions have no ftrace call to redirect"})
	}
	if ext == ".c" && (!fd.old || !fd.new) {
		what := "a new source file: an object this kernel does not have"
		if !fd.new {
			what = "removes a source file"
		}
		return refuse(TriageReason{Rule: RuleNewObject, File: p, Detail: what})
	}
	var text string
	if fd.old {
		b, err := os.ReadFile(filepath.Join(t.tree, p))
		if err != nil {
			return refuse(TriageReason{Rule: RuleNewObject, File: p, Detail: fmt.Sprintf("not in the source it should apply to: %v", err)})
		}
		text = string(b)
	}
	sc := scanC(text)
	noFtrace := ""
	if ext == ".c" {
		noFtrace = t.noFtrace(p)
	}
	var reasons []TriageReason
	seen := map[string]bool{}
	add := func(list *[]TriageReason, r TriageReason) {
		k := r.Rule + "\x00" + r.Symbol
		if !seen[k] {
			seen[k] = true
			*list = append(*list, r)
		}
	}
	changed := func(c *construct) {
		switch c.kind {
		case kindFunction, kindOther:
			switch {
			case c.hasWord(initWords...):
				add(&reasons, TriageReason{Rule: RuleInitChanged, File: p, Symbol: c.name, Detail: "changes __init/__exit code, which has run and is gone"})
			case c.hasWord("notrace", "noinstr"):
				add(&reasons, TriageReason{Rule: RuleNoFtrace, File: p, Symbol: c.name, Detail: "changes a notrace function: ftrace cannot redirect it"})
			case noFtrace != "":
				add(&reasons, TriageReason{Rule: RuleNoFtrace, File: p, Symbol: c.name, Detail: noFtrace})
			case ext == ".h":
				add(&notes, TriageReason{Rule: NoteHeader, File: p, Symbol: c.name, Detail: "changes an inline in a header: rebuild the objects that use it (stent build --object)"})
			default:
				add(&notes, TriageReason{Rule: NoteFunction, File: p, Symbol: c.name, Detail: "changes the function"})
			}
		case kindStruct:
			add(&reasons, TriageReason{Rule: RuleDataChanged, File: p, Symbol: c.name, Detail: "changes the layout of " + c.name + ": live data has the old one"})
		case kindEnum:
			if ext == ".h" {
				add(&notes, TriageReason{Rule: NoteHeader, File: p, Symbol: c.name, Detail: "changes an enum in a header: rebuild the objects that use it"})
			}
		case kindData:
			if c.hasWord(initWords...) {
				add(&reasons, TriageReason{Rule: RuleInitChanged, File: p, Symbol: c.name, Detail: "changes __init data"})
			} else {
				add(&reasons, TriageReason{Rule: RuleDataChanged, File: p, Symbol: c.name, Detail: "changes the initial value of " + c.name + ": the running kernel's copy keeps the old one"})
			}
		case kindMacro, kindDecl:
			switch {
			case strings.HasPrefix(c.name, "EXPORT_SYMBOL"):
				add(&reasons, TriageReason{Rule: RuleExportChanged, File: p, Symbol: exportName(c.head), Detail: "changes the kernel's exports, which modules link against"})
			case initcallRE.MatchString(c.name):
				add(&reasons, TriageReason{Rule: RuleInitChanged, File: p, Symbol: c.name, Detail: "changes an initcall, which has run"})
			case c.kind == kindMacro && (strings.HasPrefix(c.name, "DEFINE_") || strings.HasPrefix(c.name, "DECLARE_") || c.name == "LIST_HEAD"):
				add(&reasons, TriageReason{Rule: RuleDataChanged, File: p, Symbol: c.name, Detail: "changes the definition of static data"})
			}
		case kindPreproc:
			if ext == ".h" && c.name != "" {
				add(&notes, TriageReason{Rule: NoteHeader, File: p, Symbol: c.name, Detail: "changes a macro in a header: rebuild the objects that use it (stent build --object)"})
			}
		}
	}
	added := func(block []string) {
		// Lines added at top level: new definitions.
		as := scanC(strings.Join(block, "\n"))
		for i := range as.cons {
			c := &as.cons[i]
			switch c.kind {
			case kindFunction:
				if c.hasWord(initWords...) {
					add(&reasons, TriageReason{Rule: RuleInitChanged, File: p, Symbol: c.name, Detail: "adds __init code, which would never run"})
				} else if ext == ".h" {
					add(&notes, TriageReason{Rule: NoteHeader, File: p, Symbol: c.name, Detail: "adds an inline to a header"})
				} else {
					add(&notes, TriageReason{Rule: NoteFunction, File: p, Symbol: c.name, Detail: "adds the function"})
				}
			case kindMacro, kindDecl:
				if strings.HasPrefix(c.name, "EXPORT_SYMBOL") {
					add(&reasons, TriageReason{Rule: RuleExportChanged, File: p, Symbol: exportName(c.head), Detail: "exports a new symbol, which modules would link against"})
				} else if initcallRE.MatchString(c.name) {
					add(&reasons, TriageReason{Rule: RuleInitChanged, File: p, Symbol: c.name, Detail: "adds an initcall, which would never run"})
				}
			case kindPreproc:
				if ext == ".h" && c.name != "" {
					add(&notes, TriageReason{Rule: NoteHeader, File: p, Symbol: c.name, Detail: "adds a macro to a header"})
				}
			}
		}
	}
	for _, h := range fd.hunks {
		n := h.oldStart
		if n == 0 {
			n = 1
		}
		var block []string
		blockAt := 0
		flush := func() {
			if len(block) == 0 {
				return
			}
			if c := sc.inside(blockAt); c != nil && hasCode(block, false) {
				changed(c)
			} else if c == nil {
				added(block)
			}
			block = nil
		}
		for _, l := range h.lines {
			switch l[0] {
			case ' ':
				flush()
				n++
			case '-':
				flush()
				if n-1 < len(sc.code) && strings.TrimSpace(sc.code[n-1]) != "" {
					if c := sc.at(n); c != nil {
						changed(c)
					}
				}
				n++
			case '+':
				if len(block) == 0 {
					blockAt = n
				}
				block = append(block, l[1:])
			}
		}
		flush()
	}
	if len(reasons) > 0 {
		return Triage{Verdict: VerdictRefuse, Reasons: reasons, Notes: notes}
	}
	return Triage{Verdict: VerdictCandidate, Notes: notes}
}

// hasCode tells whether added lines hold code, not only comments or blank
// lines.
func hasCode(lines []string, inComment bool) bool {
	for _, l := range lines {
		if strings.TrimSpace(stripLine(l, &inComment)) != "" {
			return true
		}
	}
	return false
}

func exportName(head string) string {
	if i := strings.Index(head, "("); i >= 0 {
		return strings.TrimSpace(strings.SplitN(strings.SplitN(head[i+1:], ")", 2)[0], ",", 2)[0])
	}
	return ""
}

// mkRule is one assignment of a kbuild Makefile: target-cond += objects.
type mkRule struct {
	target, cond string // "obj", "y"; "nfsd", "$(CONFIG_NFSD_V4)"
	objs         []string
}

var mkRuleRE = regexp.MustCompile(`^\s*([A-Za-z0-9_.-]+?)-(y|m|objs|\$\((CONFIG_[A-Za-z0-9_]+)\))\s*[:+]?=\s*(.*)$`)

// makefile reads dir's kbuild rules, cached.
func (t *Triager) makefile(dir string) []mkRule {
	if r, ok := t.makefiles[dir]; ok {
		return r
	}
	var rules []mkRule
	for _, name := range []string{"Makefile", "Kbuild"} {
		b, err := os.ReadFile(filepath.Join(t.tree, dir, name))
		if err != nil {
			continue
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for _, l := range strings.Split(text, "\n") {
			if m := mkRuleRE.FindStringSubmatch(l); m != nil {
				cond := m[2]
				if m[3] != "" {
					cond = m[3]
				}
				rules = append(rules, mkRule{target: m[1], cond: cond, objs: strings.Fields(m[4])})
			}
		}
	}
	t.makefiles[dir] = rules
	return rules
}

// value is a condition's value in the configuration: "y", "m" or "".
func (t *Triager) value(cond string) string {
	switch cond {
	case "y", "objs", "":
		return "y"
	case "m":
		return "m"
	}
	return t.config[cond]
}

// built tells whether the configuration builds the C file path, into
// which module, or why not. Without a configuration, or when the
// Makefiles do not say, the file counts as built.
func (t *Triager) built(path string) (bool, string, string) {
	if t.config == nil {
		return true, "", ""
	}
	dir, obj := filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))+".o"
	module := ""
	// The object, through composite objects (nfsd-y += nfs4state.o,
	// obj-$(CONFIG_NFSD) += nfsd.o).
	// A name may be in several rules (obj-$(CONFIG_A) += x.o and
	// obj-$(CONFIG_B) += x.o): it is built when one of them is set.
	name := obj
	for depth := 0; depth < 4; depth++ {
		var match, set *mkRule
		rules := t.makefile(dir)
		for i := range rules {
			r := &rules[i]
			if !slicesContains(r.objs, name) {
				continue
			}
			if match == nil {
				match = r
			}
			if set == nil && (t.value(r.cond) != "" || r.target == "lib") {
				set = r
			}
		}
		if match == nil {
			break
		}
		if set == nil {
			return false, "", fmt.Sprintf("%s/Makefile builds %s only with %s, which this kernel's configuration does not set", dir, name, match.cond)
		}
		if set.target == "obj" || set.target == "lib" {
			if t.value(set.cond) == "m" {
				module = strings.TrimSuffix(name, ".o")
			}
			break
		}
		name = set.target + ".o"
	}
	// The folders above: obj-$(CONFIG_NFSD) += nfsd/ in fs/Makefile.
	for d := dir; d != "." && d != "/" && strings.Contains(d, "/"); d = filepath.Dir(d) {
		parent, sub := filepath.Dir(d), filepath.Base(d)+"/"
		var match *mkRule
		set := false
		rules := t.makefile(parent)
		for i := range rules {
			r := &rules[i]
			if slicesContains(r.objs, sub) && (r.target == "obj" || strings.HasSuffix(r.target, "core") || r.target == "subdir") {
				if match == nil {
					match = r
				}
				set = set || t.value(r.cond) != ""
			}
		}
		if match != nil && !set {
			return false, "", fmt.Sprintf("%s/Makefile builds %s only with %s, which this kernel's configuration does not set", parent, sub, match.cond)
		}
	}
	return true, module, ""
}

// noFtrace says why the C file is built without ftrace's calls, or "".
func (t *Triager) noFtrace(path string) string {
	dir, obj := filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), ".c")+".o"
	b, err := os.ReadFile(filepath.Join(t.tree, dir, "Makefile"))
	if err != nil {
		return ""
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	readded := regexp.MustCompile(`(?m)^\s*CFLAGS_` + regexp.QuoteMeta(obj) + `\s*[:+]?=.*\$\(CC_FLAGS_FTRACE\)`)
	if readded.MatchString(text) {
		return ""
	}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		hasFtrace := strings.Contains(l, "CC_FLAGS_FTRACE") || strings.Contains(l, "-pg")
		switch {
		case !hasFtrace:
		case strings.HasPrefix(l, "CFLAGS_REMOVE_"+obj):
			return dir + "/Makefile builds " + obj + " without ftrace (CFLAGS_REMOVE_" + obj + ")"
		case strings.HasPrefix(l, "ccflags-remove-"), strings.HasPrefix(l, "KBUILD_CFLAGS") && strings.Contains(l, "subst"):
			return dir + "/Makefile builds its folder without ftrace"
		}
	}
	return ""
}

func slicesContains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TriageUpload triages every fix of up and, file by file, the difference
// no changelog item claims.
func TriageUpload(up *Upload, opts TriageOptions) error {
	t, err := NewTriager(opts)
	if err != nil {
		return err
	}
	for i := range up.Fixes {
		tr := t.Fix(up.Fixes[i].Patch)
		up.Fixes[i].Triage = &tr
	}
	if u := up.Unattributed; u != nil {
		tr := t.Fix(u.Patch)
		u.Triage = &tr
		up.UnattributedTriage = nil
		for _, fd := range parsePatch(u.Patch) {
			up.UnattributedTriage = append(up.UnattributedTriage, FileTriage{File: fd.path, Triage: t.file(fd)})
		}
	}
	return nil
}

// FileTriage is one file's triage.
type FileTriage struct {
	File string `json:"file"`
	Triage
}

// TriageCounts counts triages per verdict ("refuse": 3) and per verdict and
// rule ("refuse/data-changed": 2; a triage with reasons of two rules
// counts under each).
func TriageCounts(ts []*Triage) map[string]int {
	c := map[string]int{}
	for _, t := range ts {
		if t == nil {
			continue
		}
		c[t.Verdict]++
		rules := map[string]bool{}
		for _, r := range t.Reasons {
			rules[r.Rule] = true
		}
		keys := make([]string, 0, len(rules))
		for r := range rules {
			keys = append(keys, r)
		}
		sort.Strings(keys)
		for _, r := range keys {
			c[t.Verdict+"/"+r]++
		}
	}
	return c
}
