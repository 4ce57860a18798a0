package vuln

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// Upload is one entry of a Debian changelog: a package version uploaded to
// a distribution, with the CVE ids its entry names.
type Upload struct {
	Source       string    // source package, "linux"
	Version      string    // "6.1.192-1"
	Distribution string    // "bookworm-security"
	Urgency      string    // "high"
	Date         time.Time // from the trailer line
	CVEs         []string  // in order of first mention, without duplicates
	Line         int       // line of the header in the changelog
	// Changes are the entry's items, one per fix it describes: each
	// "  * " bullet, or, for a bullet with "    - " items under it (as
	// "New upstream stable update:"), each of those.
	Changes []Change
}

// Change is one item of a changelog entry.
type Change struct {
	Text  string   // the item's text, its lines joined by spaces
	Group string   // the "*" bullet it is listed under; "" for a bullet itself
	CVEs  []string // the CVE ids the item names
}

// DebianChangelog is a parsed Debian changelog, newest upload first.
type DebianChangelog struct {
	File    string
	Uploads []Upload
}

var (
	clHeader  = regexp.MustCompile(`^([a-z0-9][a-z0-9+.-]+) \(([^()\s]+)\) ([^;]+);(.*)$`)
	clTrailer = regexp.MustCompile(`^ -- (.+) <([^>]*)>  (.+)$`)
	cveID     = regexp.MustCompile(`CVE-[0-9]{4}-[0-9]{4,}`)
	// The linux-signed-* packages re-sign a linux upload; their entry says
	// which one, and that is the linux version the image package carries.
	signedFrom = regexp.MustCompile(`Sign kernel from linux (\S+)`)
)

// ParseDebianChangelog reads a Debian changelog, plain or gzip-compressed
// (as /usr/share/doc/linux-image-*/changelog.gz), and returns its uploads.
// file names the input in errors. An entry of a linux-signed-* package is
// folded into the linux upload it signs.
func ParseDebianChangelog(file string, r io.Reader) (*DebianChangelog, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, &ParseError{File: file, Err: fmt.Errorf("gzip: %w", err)}
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	cl := &DebianChangelog{File: file}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var cur *Upload
	var body strings.Builder
	lineNo := 0
	perr := func(field, format string, args ...any) error {
		return &ParseError{File: file, Line: lineNo, Field: field, Err: fmt.Errorf(format, args...)}
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case line == "":
			continue
		case cur == nil && (strings.HasPrefix(line, "#") || strings.HasPrefix(line, "Local variables:") || strings.HasPrefix(line, "Old Changelog:")):
			if strings.HasPrefix(line, "Old Changelog:") {
				// Everything after this marker is free text.
				return finishChangelog(cl, file)
			}
			continue
		case line[0] != ' ' && line[0] != '\t':
			if cur != nil {
				return nil, perr("entry", "header of a new entry before the trailer (\" -- name <email>  date\") of the entry at line %d", cur.Line)
			}
			u, err := parseHeader(line)
			if err != nil {
				return nil, perr("header", "%v", err)
			}
			u.Line = lineNo
			cur = &u
			body.Reset()
		case strings.HasPrefix(line, " -- "):
			if cur == nil {
				return nil, perr("trailer", "trailer line outside an entry")
			}
			m := clTrailer.FindStringSubmatch(line)
			if m == nil {
				return nil, perr("trailer", "want \" -- name <email>  date\", got %q", line)
			}
			d, err := parseChangelogDate(m[3])
			if err != nil {
				return nil, perr("trailer.date", "%v", err)
			}
			cur.Date = d
			finishEntry(cur, body.String())
			cl.Uploads = append(cl.Uploads, *cur)
			cur = nil
		default:
			if cur == nil {
				return nil, perr("entry", "text outside an entry: %q", truncate(line, 60))
			}
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{File: file, Line: lineNo, Err: err}
	}
	if cur != nil {
		return nil, &ParseError{File: file, Line: cur.Line, Field: "trailer", Err: fmt.Errorf("entry %s (%s) has no trailer line", cur.Source, cur.Version)}
	}
	return finishChangelog(cl, file)
}

func finishChangelog(cl *DebianChangelog, file string) (*DebianChangelog, error) {
	if len(cl.Uploads) == 0 {
		return nil, &ParseError{File: file, Err: fmt.Errorf("no changelog entries")}
	}
	return cl, nil
}

func parseHeader(line string) (Upload, error) {
	m := clHeader.FindStringSubmatch(line)
	if m == nil {
		return Upload{}, fmt.Errorf("want \"package (version) distribution; urgency=...\", got %q", truncate(line, 80))
	}
	dists := strings.Fields(m[3])
	if len(dists) == 0 {
		return Upload{}, fmt.Errorf("no distribution in %q", truncate(line, 80))
	}
	u := Upload{Source: m[1], Version: m[2], Distribution: dists[0]}
	if err := ValidateVersion(SchemeDeb, u.Version); err != nil {
		return Upload{}, err
	}
	for _, kv := range strings.Split(m[4], ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, "urgency") {
			u.Urgency = strings.ToLower(strings.Fields(v + " x")[0])
		}
	}
	if u.Urgency == "" {
		return Upload{}, fmt.Errorf("no urgency= in %q", truncate(line, 80))
	}
	return u, nil
}

func finishEntry(u *Upload, body string) {
	if strings.HasPrefix(u.Source, "linux-signed") {
		if m := signedFrom.FindStringSubmatch(body); m != nil && ValidateVersion(SchemeDeb, m[1]) == nil {
			u.Source, u.Version = "linux", m[1]
		}
	}
	u.Changes = parseChanges(body)
	seen := map[string]bool{}
	for _, id := range cveID.FindAllString(body, -1) {
		if !seen[id] {
			seen[id] = true
			u.CVEs = append(u.CVEs, id)
		}
	}
}

// parseChanges splits an entry's body into its items: a "*" bullet is a
// change unless items ("-", "+") are listed under it, then each of those is.
// Other lines continue the item above them; "[ Name ]" lines (who made the
// changes below) are skipped.
func parseChanges(body string) []Change {
	var out []Change
	var group string
	groupAt := -1 // index in out of the current "*" bullet, -1 when it has items
	cur := -1
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "":
		case strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]"):
			cur = -1
		case strings.HasPrefix(t, "* "):
			group = strings.TrimSpace(t[2:])
			out = append(out, Change{Text: group})
			cur, groupAt = len(out)-1, len(out)-1
		case (strings.HasPrefix(t, "- ") || strings.HasPrefix(t, "+ ")) && group != "":
			if groupAt >= 0 && groupAt == len(out)-1 {
				out = out[:groupAt] // the bullet is a heading of items
			}
			groupAt = -1
			out = append(out, Change{Text: strings.TrimSpace(t[2:]), Group: group})
			cur = len(out) - 1
		default:
			if cur >= 0 {
				out[cur].Text += " " + t
			}
		}
	}
	for i := range out {
		seen := map[string]bool{}
		for _, id := range cveID.FindAllString(out[i].Text, -1) {
			if !seen[id] {
				seen[id] = true
				out[i].CVEs = append(out[i].CVEs, id)
			}
		}
	}
	return out
}

func parseChangelogDate(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123Z, "Mon, _2 Jan 2006 15:04:05 -0700", "Mon,  2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("date %q is not RFC 2822 (\"Mon, 16 Nov 2026 11:17:40 +0100\")", s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// debianCodenames maps Debian codenames to release numbers, for matching a
// changelog's distribution to a host's /etc/os-release.
var debianCodenames = map[string]string{
	"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14", "duke": "15",
}

// suiteCodename reduces a distribution field to a codename:
// "bookworm-security" → "bookworm"; "unstable", "experimental" stay.
func suiteCodename(dist string) string {
	c, _, _ := strings.Cut(dist, "-")
	return c
}
