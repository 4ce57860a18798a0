package vuln

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	cvss30 "github.com/pandatix/go-cvss/30"
	cvss31 "github.com/pandatix/go-cvss/31"
	cvss40 "github.com/pandatix/go-cvss/40"
)

// Score is one CVSS score: the base score computed from the vector.
type Score struct {
	Version string  `json:"version"` // "3.1", "3.0", "4.0"
	Vector  string  `json:"vector"`
	Base    float64 `json:"base"`
	Source  string  `json:"source"` // "cna", "adp", "nvd", "nvd-secondary", "osv"
}

// ParseCVSS computes the base score of a CVSS v3.0, v3.1 or v4.0 vector.
func ParseCVSS(vector string) (Score, error) {
	switch {
	case strings.HasPrefix(vector, "CVSS:3.1/"):
		c, err := cvss31.ParseVector(vector)
		if err != nil {
			return Score{}, fmt.Errorf("cvss vector %q: %w", vector, err)
		}
		return Score{Version: "3.1", Vector: vector, Base: c.BaseScore()}, nil
	case strings.HasPrefix(vector, "CVSS:3.0/"):
		c, err := cvss30.ParseVector(vector)
		if err != nil {
			return Score{}, fmt.Errorf("cvss vector %q: %w", vector, err)
		}
		return Score{Version: "3.0", Vector: vector, Base: c.BaseScore()}, nil
	case strings.HasPrefix(vector, "CVSS:4.0/"):
		c, err := cvss40.ParseVector(vector)
		if err != nil {
			return Score{}, fmt.Errorf("cvss vector %q: %w", vector, err)
		}
		return Score{Version: "4.0", Vector: vector, Base: c.Score()}, nil
	}
	return Score{}, fmt.Errorf("cvss vector %q: want CVSS:3.0/, CVSS:3.1/ or CVSS:4.0/", truncate(vector, 60))
}

// Level is a qualitative severity.
type Level int

const (
	LevelUnknown Level = iota
	LevelNone
	LevelLow
	LevelMedium
	LevelHigh
	LevelCritical
)

var levelNames = [...]string{"unknown", "none", "low", "medium", "high", "critical"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel reads a level name (case-insensitive). Debian urgencies map
// onto levels: emergency → critical.
func ParseLevel(s string) (Level, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "emergency":
		return LevelCritical, nil
	case "moderate", "important":
		// Red Hat's words for medium and high.
		if s == "moderate" {
			return LevelMedium, nil
		}
		return LevelHigh, nil
	}
	for i, n := range levelNames {
		if n == s {
			return Level(i), nil
		}
	}
	return LevelUnknown, fmt.Errorf("severity %q: want none, low, medium, high or critical", s)
}

func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// LevelOfScore is the CVSS v3/v4 qualitative rating of a base score.
func LevelOfScore(s float64) Level {
	switch {
	case s >= 9.0:
		return LevelCritical
	case s >= 7.0:
		return LevelHigh
	case s >= 4.0:
		return LevelMedium
	case s > 0:
		return LevelLow
	}
	return LevelNone
}

// Severity is the severity Stent uses for a CVE: a CVSS score when one is
// known, otherwise the distribution's urgency.
type Severity struct {
	Level  Level
	Score  float64 // 0 when unscored
	Scored bool
	Vector string
	Source string // "cna", "nvd", "osv", "debian-urgency", ... or "" when unknown
}

func (s Severity) MarshalJSON() ([]byte, error) {
	type out struct {
		Level  Level    `json:"level"`
		Score  *float64 `json:"score,omitempty"`
		Vector string   `json:"vector,omitempty"`
		Source string   `json:"source,omitempty"`
	}
	o := out{Level: s.Level, Vector: s.Vector, Source: s.Source}
	if s.Scored {
		sc := s.Score
		o.Score = &sc
	}
	return json.Marshal(o)
}

func (s *Severity) UnmarshalJSON(b []byte) error {
	var in struct {
		Level  Level    `json:"level"`
		Score  *float64 `json:"score"`
		Vector string   `json:"vector"`
		Source string   `json:"source"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*s = Severity{Level: in.Level, Vector: in.Vector, Source: in.Source}
	if in.Score != nil {
		s.Score, s.Scored = *in.Score, true
	}
	return nil
}

// scorePreference orders score sources: the kernel CNA's own scores first,
// then NVD's primary score, then anything else; within a source v3.1
// before v4.0 before v3.0 (the thresholds in policies are written for v3).
func scoreRank(s Score) int {
	src := map[string]int{"cna": 0, "nvd": 1, "adp": 2, "osv": 3, "nvd-secondary": 4}
	r, ok := src[s.Source]
	if !ok {
		r = 5
	}
	ver := map[string]int{"3.1": 0, "4.0": 1, "3.0": 2}[s.Version]
	return r*10 + ver
}

// chooseSeverity picks the severity of a CVE from its scores. Without a
// score, the distribution's upload urgency may only raise a CVE to high or
// critical: most security uploads say "medium" whatever they fix, so a
// lower urgency is no evidence that a CVE is not serious, and the CVE stays
// unrated (which policies count as at risk, never compliant).
func chooseSeverity(scores []Score, urgency string) Severity {
	best := -1
	for i, s := range scores {
		if best < 0 || scoreRank(s) < scoreRank(scores[best]) {
			best = i
		}
	}
	if best >= 0 {
		s := scores[best]
		return Severity{Level: LevelOfScore(s.Base), Score: s.Base, Scored: true, Vector: s.Vector, Source: s.Source}
	}
	if urgency != "" {
		if l, err := ParseLevel(urgency); err == nil && l >= LevelHigh {
			return Severity{Level: l, Source: "debian-urgency"}
		}
	}
	return Severity{Level: LevelUnknown}
}

// sortScores orders scores by preference, then by vector, so output is
// deterministic whatever order a feed listed them in.
func sortScores(s []Score) {
	sort.SliceStable(s, func(i, j int) bool {
		if ri, rj := scoreRank(s[i]), scoreRank(s[j]); ri != rj {
			return ri < rj
		}
		return s[i].Vector < s[j].Vector
	})
}
