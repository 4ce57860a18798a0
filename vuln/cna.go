package vuln

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// CNARecord is one CVE as the kernel CNA publishes it: the CVE JSON 5
// record plus the .dyad, .sha1 and .cvss files beside it.
type CNARecord struct {
	ID          string
	Title       string
	Published   time.Time // cveMetadata.datePublished; zero when absent
	FixCommit   string    // mainline fixing commit (.sha1)
	Scores      []Score
	Upstream    *Upstream // nil when the record gives no version ranges
	JSONRanges  *Upstream // ranges as read from the JSON record, for cross-checks
	DyadRanges  *Upstream // ranges as read from the .dyad file, nil without one
	Rejected    bool
	SourceFiles []string
	Unreadable  string // why the record was skipped (it stands for its CVE only); "" when read
}

var cveIDPattern = regexp.MustCompile(`^CVE-[0-9]{4}-[0-9]{4,}$`)

// cveJSON is the part of a CVE JSON 5 record Stent reads.
type cveJSON struct {
	DataType    string `json:"dataType"`
	CVEMetadata *struct {
		CVEID         string `json:"cveId"`
		State         string `json:"state"`
		DatePublished string `json:"datePublished"`
	} `json:"cveMetadata"`
	Containers *struct {
		CNA *struct {
			Title    string        `json:"title"`
			Affected []cveAffected `json:"affected"`
			Metrics  []cveMetric   `json:"metrics"`
		} `json:"cna"`
		ADP []struct {
			Metrics []cveMetric `json:"metrics"`
		} `json:"adp"`
	} `json:"containers"`
}

type cveAffected struct {
	Product       string       `json:"product"`
	DefaultStatus string       `json:"defaultStatus"`
	Versions      []cveVersion `json:"versions"`
}

type cveVersion struct {
	Version         string `json:"version"`
	LessThan        string `json:"lessThan"`
	LessThanOrEqual string `json:"lessThanOrEqual"`
	Status          string `json:"status"`
	VersionType     string `json:"versionType"`
}

type cveMetric struct {
	V31 *struct {
		Vector string `json:"vectorString"`
	} `json:"cvssV3_1"`
	V30 *struct {
		Vector string `json:"vectorString"`
	} `json:"cvssV3_0"`
	V40 *struct {
		Vector string `json:"vectorString"`
	} `json:"cvssV4_0"`
}

// ParseCVERecord parses a CVE JSON 5 record as the kernel CNA writes it.
func ParseCVERecord(file string, data []byte) (*CNARecord, error) {
	var doc cveJSON
	if err := strictJSON(data, &doc); err != nil {
		return nil, jsonError(file, data, err)
	}
	if doc.DataType != "CVE_RECORD" {
		if doc.DataType == "" {
			return nil, missing(file, "dataType")
		}
		return nil, &ParseError{File: file, Field: "dataType", Err: fmt.Errorf("want CVE_RECORD, got %q", doc.DataType)}
	}
	if doc.CVEMetadata == nil {
		return nil, missing(file, "cveMetadata")
	}
	id := doc.CVEMetadata.CVEID
	if id == "" {
		return nil, missing(file, "cveMetadata.cveId")
	}
	if !cveIDPattern.MatchString(id) {
		return nil, &ParseError{File: file, Field: "cveMetadata.cveId", Err: fmt.Errorf("%q is not a CVE id", id)}
	}
	rec := &CNARecord{ID: id, SourceFiles: []string{file}}
	switch doc.CVEMetadata.State {
	case "PUBLISHED":
	case "REJECTED":
		rec.Rejected = true
		return rec, nil
	case "":
		return nil, missing(file, "cveMetadata.state")
	default:
		return nil, &ParseError{File: file, Field: "cveMetadata.state", Err: fmt.Errorf("unknown state %q", doc.CVEMetadata.State)}
	}
	if s := doc.CVEMetadata.DatePublished; s != "" {
		t, err := parseLooseTime(s)
		if err != nil {
			return nil, &ParseError{File: file, Field: "cveMetadata.datePublished", Err: err}
		}
		rec.Published = t
	}
	if doc.Containers == nil || doc.Containers.CNA == nil {
		return nil, missing(file, "containers.cna")
	}
	cna := doc.Containers.CNA
	rec.Title = cna.Title
	if len(cna.Affected) == 0 {
		return nil, missing(file, "containers.cna.affected")
	}
	up, err := upstreamFromJSON(cna.Affected)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.File = file
			return nil, pe
		}
		return nil, &ParseError{File: file, Field: "containers.cna.affected", Err: err}
	}
	rec.JSONRanges = up
	rec.Upstream = up
	for i, m := range cna.Metrics {
		s, err := scoreFromMetric(m, "cna")
		if err != nil {
			return nil, &ParseError{File: file, Field: fmt.Sprintf("containers.cna.metrics[%d]", i), Err: err}
		}
		rec.Scores = append(rec.Scores, s...)
	}
	for j, adp := range doc.Containers.ADP {
		for i, m := range adp.Metrics {
			s, err := scoreFromMetric(m, "adp")
			if err != nil {
				return nil, &ParseError{File: file, Field: fmt.Sprintf("containers.adp[%d].metrics[%d]", j, i), Err: err}
			}
			rec.Scores = append(rec.Scores, s...)
		}
	}
	return rec, nil
}

func scoreFromMetric(m cveMetric, source string) ([]Score, error) {
	var out []Score
	for _, v := range []*struct {
		Vector string `json:"vectorString"`
	}{m.V31, m.V30, m.V40} {
		if v == nil {
			continue
		}
		if v.Vector == "" {
			return nil, errors.New("vectorString: missing required field")
		}
		s, err := ParseCVSS(v.Vector)
		if err != nil {
			return nil, err
		}
		s.Source = source
		out = append(out, s)
	}
	return out, nil
}

// upstreamFromJSON reads the semver ranges of the CVE record's affected
// entries (git ranges are not versions and are skipped). It returns nil
// when the record gives no version ranges at all.
func upstreamFromJSON(affected []cveAffected) (*Upstream, error) {
	up := &Upstream{From: "json"}
	any := false
	for i, a := range affected {
		hasIntro := false
		for j, v := range a.Versions {
			field := fmt.Sprintf("containers.cna.affected[%d].versions[%d]", i, j)
			if v.VersionType == "git" {
				continue
			}
			if v.Version == "" {
				return nil, &ParseError{Field: field + ".version", Err: errors.New("missing required field")}
			}
			if v.Status != "affected" && v.Status != "unaffected" && v.Status != "unknown" {
				return nil, &ParseError{Field: field + ".status", Err: fmt.Errorf("want affected, unaffected or unknown, got %q", v.Status)}
			}
			parse := func(name, s string) (KernelVersion, error) {
				if s == "0" {
					return KernelVersion{}, nil
				}
				kv, err := ParseKernelVersion(s)
				if err != nil {
					return KernelVersion{}, &ParseError{Field: field + "." + name, Err: err}
				}
				return kv, nil
			}
			from, err := parse("version", v.Version)
			if err != nil {
				return nil, err
			}
			any = true
			switch {
			case v.Status == "affected" && v.LessThan == "" && v.LessThanOrEqual == "":
				up.Introduced = append(up.Introduced, from)
				hasIntro = true
			case v.Status == "affected" && v.LessThan != "":
				to, err := parse("lessThan", v.LessThan)
				if err != nil {
					return nil, err
				}
				up.Introduced = append(up.Introduced, from)
				hasIntro = true
				// A range that ends at the next mainline release says the
				// branch has no fix; only an end in the same branch is one.
				if !to.IsMainline() && to.Branch() == from.Branch() {
					up.Fixed = append(up.Fixed, to)
				}
			case v.Status == "unaffected" && v.LessThan != "" && v.Version == "0":
				to, err := parse("lessThan", v.LessThan)
				if err != nil {
					return nil, err
				}
				up.Introduced = append(up.Introduced, to)
				hasIntro = true
			case v.Status == "unaffected" && v.LessThanOrEqual != "":
				lte := v.LessThanOrEqual
				if lte != "*" && !strings.HasSuffix(lte, ".*") {
					if _, err := parse("lessThanOrEqual", lte); err != nil {
						return nil, err
					}
				}
				up.Fixed = append(up.Fixed, from)
			case v.Status == "unaffected" && v.LessThan == "" && v.LessThanOrEqual == "":
				// A single unaffected version says nothing about others.
			}
		}
		if !hasIntro && a.DefaultStatus == "affected" && len(a.Versions) > 0 {
			up.Introduced = append(up.Introduced, KernelVersion{})
		}
	}
	if !any {
		return nil, nil
	}
	return up, nil
}

// ParseDyad parses a .dyad file: lines of
// vulnerable_version:vulnerable_sha:fixed_version:fixed_sha, where "0"
// stands for "since the beginning" (vulnerable) or "not fixed" (fixed).
func ParseDyad(file string, data []byte) (*Upstream, error) {
	up := &Upstream{From: "dyad"}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, ":")
		if len(f) != 4 {
			return nil, &ParseError{File: file, Line: line, Err: fmt.Errorf("want 4 colon-separated fields, got %d", len(f))}
		}
		if f[0] == "0" {
			up.Introduced = append(up.Introduced, KernelVersion{})
		} else {
			v, err := ParseKernelVersion(f[0])
			if err != nil {
				return nil, &ParseError{File: file, Line: line, Field: "vulnerable_version", Err: err}
			}
			up.Introduced = append(up.Introduced, v)
		}
		if f[2] != "0" {
			v, err := ParseKernelVersion(f[2])
			if err != nil {
				return nil, &ParseError{File: file, Line: line, Field: "fixed_version", Err: err}
			}
			up.Fixed = append(up.Fixed, v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{File: file, Line: line, Err: err}
	}
	if len(up.Introduced) == 0 {
		return nil, &ParseError{File: file, Err: errors.New("no vulnerable:fixed pairs")}
	}
	return up, nil
}

// ParseCVSSFile parses a kernel CNA .cvss file: a first line
// "<org-id> CVSS:3.1/<vector>", then free text.
func ParseCVSSFile(file string, data []byte) (Score, error) {
	first, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(first)
	if len(f) != 2 {
		return Score{}, &ParseError{File: file, Line: 1, Err: fmt.Errorf("want \"<org-id> CVSS:x.y/<vector>\", got %q", truncate(first, 80))}
	}
	s, err := ParseCVSS(f[1])
	if err != nil {
		return Score{}, &ParseError{File: file, Line: 1, Field: "vector", Err: err}
	}
	s.Source = "cna"
	return s, nil
}

// ParseSHA1File reads a .sha1 file: the mainline fixing commit.
func ParseSHA1File(file string, data []byte) (string, error) {
	s := strings.TrimSpace(string(data))
	if first, _, ok := strings.Cut(s, "\n"); ok {
		s = strings.TrimSpace(first)
	}
	if len(s) != 40 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", &ParseError{File: file, Line: 1, Err: fmt.Errorf("want a 40-digit hex commit id, got %q", truncate(s, 50))}
	}
	return s, nil
}

// strictJSON decodes data into v and refuses trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		off := dec.InputOffset()
		return &json.SyntaxError{Offset: off}
	}
	return nil
}

func parseLooseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q is not RFC 3339", s)
}
