package vuln

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// OSVRecord is one OSV advisory (https://ossf.github.io/osv-schema/).
type OSVRecord struct {
	ID        string
	CVEs      []string // the CVE ids it is about: its id or its aliases/upstream
	Published time.Time
	Modified  time.Time
	Scores    []Score
	Affected  []OSVAffected
	Withdrawn bool
	File      string
}

// OSVAffected is the part of an advisory about one package in one ecosystem.
type OSVAffected struct {
	Ecosystem string // "Debian:12", "AlmaLinux:9", "Ubuntu:22.04:LTS"
	Package   string // "linux", "kernel"
	Ranges    []OSVRange
	Versions  []string
	Severity  string // ecosystem_specific or database_specific urgency/severity, when given
	Index     int    // position in the advisory's affected list, for errors
}

// OSVRange is a range of affected versions as a list of events.
type OSVRange struct {
	Type   string // ECOSYSTEM, SEMVER, GIT
	Events []OSVEvent
}

// OSVEvent is one of introduced, fixed, last_affected or limit.
type OSVEvent struct {
	Kind    string // "introduced", "fixed", "last_affected", "limit"
	Version string
}

type osvJSON struct {
	ID        string   `json:"id"`
	Modified  string   `json:"modified"`
	Published string   `json:"published"`
	Withdrawn string   `json:"withdrawn"`
	Aliases   []string `json:"aliases"`
	Upstream  []string `json:"upstream"`
	Severity  []struct {
		Type  string `json:"type"`
		Score string `json:"score"`
	} `json:"severity"`
	Affected []struct {
		Package *struct {
			Ecosystem string `json:"ecosystem"`
			Name      string `json:"name"`
		} `json:"package"`
		Ranges []struct {
			Type   string              `json:"type"`
			Events []map[string]string `json:"events"`
		} `json:"ranges"`
		Versions          []string        `json:"versions"`
		EcosystemSpecific json.RawMessage `json:"ecosystem_specific"`
		DatabaseSpecific  json.RawMessage `json:"database_specific"`
	} `json:"affected"`
}

// ParseOSV parses an OSV document: one advisory object or a JSON array of
// them.
func ParseOSV(file string, data []byte) ([]*OSVRecord, error) {
	trim := bytes.TrimLeft(data, " \t\r\n")
	var docs []osvJSON
	if len(trim) > 0 && trim[0] == '[' {
		if err := strictJSON(data, &docs); err != nil {
			return nil, jsonError(file, data, err)
		}
	} else {
		var d osvJSON
		if err := strictJSON(data, &d); err != nil {
			return nil, jsonError(file, data, err)
		}
		docs = []osvJSON{d}
	}
	out := make([]*OSVRecord, 0, len(docs))
	for i, d := range docs {
		prefix := ""
		if len(docs) > 1 || (len(trim) > 0 && trim[0] == '[') {
			prefix = fmt.Sprintf("[%d].", i)
		}
		rec, err := osvRecord(file, prefix, d)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func osvRecord(file, prefix string, d osvJSON) (*OSVRecord, error) {
	fail := func(field string, err error) error {
		return &ParseError{File: file, Field: prefix + field, Err: err}
	}
	if d.ID == "" {
		return nil, missing(file, prefix+"id")
	}
	if d.Modified == "" {
		return nil, missing(file, prefix+"modified")
	}
	rec := &OSVRecord{ID: d.ID, File: file}
	var err error
	if rec.Modified, err = parseLooseTime(d.Modified); err != nil {
		return nil, fail("modified", err)
	}
	if d.Published != "" {
		if rec.Published, err = parseLooseTime(d.Published); err != nil {
			return nil, fail("published", err)
		}
	}
	rec.Withdrawn = d.Withdrawn != ""
	seen := map[string]bool{}
	for _, id := range append(append([]string{d.ID}, d.Aliases...), d.Upstream...) {
		if cveIDPattern.MatchString(id) && !seen[id] {
			seen[id] = true
			rec.CVEs = append(rec.CVEs, id)
		}
	}
	for i, s := range d.Severity {
		if !strings.HasPrefix(s.Type, "CVSS_V") {
			continue
		}
		sc, err := ParseCVSS(s.Score)
		if err != nil {
			return nil, fail(fmt.Sprintf("severity[%d].score", i), err)
		}
		sc.Source = "osv"
		rec.Scores = append(rec.Scores, sc)
	}
	for i, a := range d.Affected {
		field := fmt.Sprintf("affected[%d]", i)
		if a.Package == nil {
			continue // an affected entry about a repository only
		}
		if a.Package.Ecosystem == "" {
			return nil, missing(file, prefix+field+".package.ecosystem")
		}
		if a.Package.Name == "" {
			return nil, missing(file, prefix+field+".package.name")
		}
		oa := OSVAffected{Ecosystem: a.Package.Ecosystem, Package: a.Package.Name, Versions: a.Versions, Index: i}
		oa.Severity = osvSpecificSeverity(a.EcosystemSpecific, a.DatabaseSpecific)
		for j, r := range a.Ranges {
			rf := fmt.Sprintf("%s.ranges[%d]", field, j)
			if r.Type == "" {
				return nil, missing(file, prefix+rf+".type")
			}
			if len(r.Events) == 0 {
				return nil, missing(file, prefix+rf+".events")
			}
			or := OSVRange{Type: r.Type}
			for k, ev := range r.Events {
				if len(ev) != 1 {
					return nil, fail(fmt.Sprintf("%s.events[%d]", rf, k), fmt.Errorf("want exactly one of introduced, fixed, last_affected, limit; got %d keys", len(ev)))
				}
				for kind, v := range ev {
					switch kind {
					case "introduced", "fixed", "last_affected", "limit":
					default:
						return nil, fail(fmt.Sprintf("%s.events[%d]", rf, k), fmt.Errorf("unknown event %q", kind))
					}
					if v == "" {
						return nil, missing(file, fmt.Sprintf("%s%s.events[%d].%s", prefix, rf, k, kind))
					}
					or.Events = append(or.Events, OSVEvent{Kind: kind, Version: v})
				}
			}
			oa.Ranges = append(oa.Ranges, or)
		}
		rec.Affected = append(rec.Affected, oa)
	}
	return rec, nil
}

// osvSpecificSeverity digs out a distribution's own rating, as Debian's
// ("urgency") and Ubuntu's and Red Hat's ("severity") OSV exports carry it.
func osvSpecificSeverity(raws ...json.RawMessage) string {
	for _, raw := range raws {
		if len(raw) == 0 {
			continue
		}
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		for _, k := range []string{"urgency", "severity"} {
			if s, ok := m[k].(string); ok {
				if _, err := ParseLevel(s); err == nil {
					return s
				}
			}
		}
	}
	return ""
}
