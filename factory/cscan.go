package factory

import (
	"regexp"
	"strings"
)

// A C file's top-level constructs, found by a scan that knows comments,
// strings, braces, parentheses and preprocessor lines but not C's grammar:
// enough to say which definition a changed line belongs to. It never
// fails; text it does not understand ends up in a construct of kind
// kindOther.

// Kinds of top-level construct.
const (
	kindFunction = "function" // a definition with a body: int f(void) { ... }
	kindStruct   = "struct"   // struct, union or enum definition
	kindEnum     = "enum"
	kindData     = "data"    // a variable with an initialiser: x = ...;
	kindDecl     = "decl"    // a declaration without body or initialiser
	kindMacro    = "macro"   // a macro call at top level: EXPORT_SYMBOL(f);
	kindPreproc  = "preproc" // #define, #include, #if ...
	kindOther    = "other"
)

type construct struct {
	start, end int // 1-based lines, inclusive
	kind, name string
	head       string // the text before the body or the end, comments removed
	tail       string // a type's text after its body: "} scsi_changer;"
}

// hasWord tells whether the construct's head has one of the words
// (attributes such as __init or notrace).
func (c *construct) hasWord(words ...string) bool {
	for _, w := range wordRE.FindAllString(c.head, -1) {
		for _, x := range words {
			if w == x {
				return true
			}
		}
	}
	return false
}

var (
	wordRE     = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	typeHeadRE = regexp.MustCompile(`^(?:typedef\s+)?(struct|union|enum)(?:\s+(?:__\w+(?:\([^)]*\))?\s+)*([A-Za-z_]\w*))?\s*$`)
	macroRE    = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	defineRE   = regexp.MustCompile(`^#\s*define\s+(\w+)`)
	bracketRE  = regexp.MustCompile(`\[[^\]]*\]|\([^)]*\)`)
)

// scan is a C file's constructs and, per line, its code with comments and
// string contents removed.
type scan struct {
	cons []construct
	code []string // code[i] is line i+1's code
}

// scanC scans C source text.
func scanC(text string) *scan {
	lines := strings.Split(text, "\n")
	s := &scan{code: make([]string, len(lines))}
	var (
		inComment bool
		depth     int // braces
		paren     int // parentheses at depth 0
		cur       *construct
		sawBody   bool // cur's body opened
		skip      []bool
		pp        bool // inside a continued preprocessor line
		ppCons    *construct
	)
	end := func(line int) {
		if cur != nil {
			// typedef struct { ... } name;: the type is named by its typedef.
			if w := wordRE.FindAllString(cur.tail, -1); (cur.kind == kindStruct || cur.kind == kindEnum) && !strings.Contains(cur.name, " ") && len(w) > 0 {
				cur.name += " " + w[len(w)-1]
			}
			cur.end = line
			s.cons = append(s.cons, *cur)
			cur, sawBody, paren = nil, false, 0
		}
	}
	for i, raw := range lines {
		n := i + 1
		code := stripLine(raw, &inComment)
		s.code[i] = code
		trimmed := strings.TrimSpace(code)
		if pp || strings.HasPrefix(trimmed, "#") {
			// Conditionals: braces are counted in the first branch only.
			if !pp {
				switch d := ppDirective(trimmed); d {
				case "if", "ifdef", "ifndef":
					skip = append(skip, false)
				case "else", "elif":
					if len(skip) > 0 {
						skip[len(skip)-1] = true
					}
				case "endif":
					if len(skip) > 0 {
						skip = skip[:len(skip)-1]
					}
				}
				if depth == 0 && cur == nil {
					ppCons = &construct{start: n, kind: kindPreproc, head: trimmed}
					if m := defineRE.FindStringSubmatch(trimmed); m != nil {
						ppCons.name = m[1]
					}
				}
			}
			pp = strings.HasSuffix(strings.TrimRight(raw, " \t"), "\\")
			if !pp && ppCons != nil {
				ppCons.end = n
				s.cons = append(s.cons, *ppCons)
				ppCons = nil
			}
			continue
		}
		if len(skip) > 0 && skip[len(skip)-1] {
			continue // an #else branch: its braces would be counted twice
		}
		for _, r := range code {
			if depth == 0 && cur == nil {
				if r == ' ' || r == '\t' || r == ';' {
					continue
				}
				cur = &construct{start: n}
			}
			switch r {
			case '{':
				if depth == 0 && !sawBody {
					sawBody = true
					cur.kind, cur.name = classifyHead(cur.head, true)
				}
				depth++
			case '}':
				if depth > 0 {
					depth--
				}
				if depth == 0 && cur != nil && cur.kind == kindFunction {
					end(n)
				}
			case '(':
				if depth == 0 {
					paren++
				}
			case ')':
				if depth == 0 && paren > 0 {
					paren--
				}
			case ';':
				if depth == 0 && paren == 0 && cur != nil {
					if !sawBody {
						cur.kind, cur.name = classifyHead(cur.head, false)
					}
					end(n)
				}
			}
			if depth == 0 && cur != nil {
				if !sawBody {
					cur.head += string(r)
				} else if cur.kind == kindStruct || cur.kind == kindEnum {
					cur.tail += string(r)
				}
			}
		}
		if cur != nil && !sawBody {
			cur.head += " "
		}
	}
	if cur != nil {
		if cur.kind == "" {
			cur.kind = kindOther
		}
		end(len(lines))
	}
	return s
}

// classifyHead says what a construct is from the text before its body
// (body) or before its end.
func classifyHead(head string, body bool) (kind, name string) {
	h := strings.Join(strings.Fields(head), " ")
	if i := topLevelIndex(h, '='); i >= 0 {
		return kindData, dataName(h[:i])
	}
	if m := typeHeadRE.FindStringSubmatch(h); body && m != nil {
		kind := kindStruct
		if m[1] == "enum" {
			kind = kindEnum
		}
		return kind, strings.TrimSpace(m[1] + " " + m[2])
	}
	if i := strings.Index(h, "("); i >= 0 {
		name := lastWord(h[:i], h[:i])
		if macroRE.MatchString(name) && !strings.Contains(strings.TrimSpace(h[:i]), " ") {
			// SYSCALL_DEFINE3(fspick, ...) { }: name it by its first argument.
			if body {
				arg := strings.TrimSpace(strings.SplitN(strings.SplitN(h[i+1:], ",", 2)[0], ")", 2)[0])
				return kindFunction, name + "(" + arg + ")"
			}
			return kindMacro, name
		}
		if body {
			return kindFunction, lastWordBeforeParams(h)
		}
		if macroRE.MatchString(name) {
			return kindMacro, name // static DEFINE_MUTEX(x);
		}
		return kindDecl, name
	}
	if body {
		return kindOther, lastWord(h, h)
	}
	return kindDecl, lastWord(h, h)
}

// dataName names a variable from the text before its '=': the last
// identifier that is not an attribute, outside brackets
// ("static int limits[NR_X] __read_mostly" is limits).
func dataName(s string) string {
	s = bracketRE.ReplaceAllString(s, " ")
	w := wordRE.FindAllString(s, -1)
	for i := len(w) - 1; i >= 0; i-- {
		if !strings.HasPrefix(w[i], "__") {
			return w[i]
		}
	}
	return lastWord(s, s)
}

// lastWordBeforeParams names a function from its head: the word before
// the last top-level parameter list ("static int __init ip_mr_init(void)").
func lastWordBeforeParams(h string) string {
	depth, open := 0, -1
	for i := len(h) - 1; i >= 0; i-- {
		switch h[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				open = i
			}
		}
		if open >= 0 {
			break
		}
	}
	if open < 0 {
		return lastWord(h, h)
	}
	return lastWord(h[:open], h)
}

// lastWord is s's last identifier, or fallback's.
func lastWord(s, fallback string) string {
	w := wordRE.FindAllString(s, -1)
	if len(w) == 0 {
		w = wordRE.FindAllString(fallback, -1)
	}
	if len(w) == 0 {
		return ""
	}
	return w[len(w)-1]
}

// topLevelIndex is the index of c in s outside parentheses and brackets,
// or -1 (an initialiser's '=', not one in __attribute__((x = y))).
func topLevelIndex(s string, c byte) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case c:
			if depth == 0 && (c != '=' || (i+1 >= len(s) || s[i+1] != '=') && (i == 0 || !strings.ContainsRune("=!<>", rune(s[i-1])))) {
				return i
			}
		}
	}
	return -1
}

func ppDirective(line string) string {
	d := strings.TrimSpace(strings.TrimPrefix(line, "#"))
	if i := strings.IndexAny(d, " \t("); i >= 0 {
		d = d[:i]
	}
	return d
}

// stripLine returns a line's code: comments removed and the contents of
// string and character literals blanked; inComment carries a block
// comment from line to line.
func stripLine(line string, inComment *bool) string {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		c := line[i]
		if *inComment {
			if c == '*' && i+1 < len(line) && line[i+1] == '/' {
				*inComment = false
				i++
				b.WriteByte(' ')
			}
			continue
		}
		switch {
		case c == '/' && i+1 < len(line) && line[i+1] == '*':
			*inComment = true
			i++
		case c == '/' && i+1 < len(line) && line[i+1] == '/':
			return b.String()
		case c == '"' || c == '\'':
			b.WriteByte(c)
			for i++; i < len(line) && line[i] != c; i++ {
				if line[i] == '\\' {
					i++
				}
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// at returns the construct line n belongs to, or nil.
func (s *scan) at(n int) *construct {
	for i := range s.cons {
		if c := &s.cons[i]; c.start <= n && n <= c.end {
			return c
		}
	}
	return nil
}

// inside returns the construct a line inserted before line n goes into
// (between two of its lines), or nil at top level.
func (s *scan) inside(n int) *construct {
	for i := range s.cons {
		if c := &s.cons[i]; c.start <= n-1 && n <= c.end {
			return c
		}
	}
	return nil
}
