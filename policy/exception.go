package policy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"time"
)

// Exception waives rules for some CVEs on some hosts until it expires. An
// expired exception waives nothing; reports say it expired.
type Exception struct {
	CVEs       []string  `json:"cves"`            // CVE ids, or "*" for every CVE (then Hosts is required)
	Hosts      []string  `json:"hosts,omitempty"` // host name globs; none: every host
	Rules      []string  `json:"rules,omitempty"` // rule ids; none: every rule (and no actions for those CVEs)
	Expires    time.Time `json:"expires"`
	Reason     string    `json:"reason"`
	ApprovedBy string    `json:"approved_by,omitempty"`
}

type exceptionFile struct {
	CVEs       []string `json:"cves"`
	Hosts      []string `json:"hosts"`
	Rules      []string `json:"rules"`
	Expires    string   `json:"expires"`
	Reason     string   `json:"reason"`
	ApprovedBy string   `json:"approved_by"`
}

var cvePattern = regexp.MustCompile(`^CVE-[0-9]{4}-[0-9]{4,}$`)

func (ef exceptionFile) build(p *Policy) (Exception, error) {
	e := Exception{CVEs: ef.CVEs, Hosts: ef.Hosts, Rules: ef.Rules, Reason: ef.Reason, ApprovedBy: ef.ApprovedBy}
	if ef.Reason == "" {
		return Exception{}, errors.New("reason: missing required field (say why the risk is accepted)")
	}
	if ef.Expires == "" {
		return Exception{}, errors.New("expires: missing required field (exceptions must end)")
	}
	t, err := time.Parse(time.RFC3339, ef.Expires)
	if err != nil {
		d, derr := time.Parse("2006-01-02", ef.Expires)
		if derr != nil {
			return Exception{}, fmt.Errorf("expires %q: want a date (2026-12-31, the end of that day in UTC) or RFC 3339 time", ef.Expires)
		}
		t = d.Add(24 * time.Hour)
	}
	e.Expires = t.UTC()
	if len(ef.CVEs) == 0 {
		return Exception{}, errors.New("cves: missing required field")
	}
	for _, c := range ef.CVEs {
		if c == "*" {
			if len(ef.Hosts) == 0 {
				return Exception{}, errors.New(`cves: "*" needs hosts: an exception for every CVE on every host is no policy`)
			}
			continue
		}
		if !cvePattern.MatchString(c) {
			return Exception{}, fmt.Errorf("cves: %q is not a CVE id", c)
		}
	}
	for _, h := range ef.Hosts {
		if _, err := path.Match(h, ""); err != nil {
			return Exception{}, fmt.Errorf("hosts: bad pattern %q", h)
		}
	}
	for _, r := range ef.Rules {
		if p.Rule(r) == nil {
			return Exception{}, fmt.Errorf("rules: no rule %q in this policy", r)
		}
	}
	return e, nil
}

// appliesTo tells whether the exception names host (active or not).
func (e *Exception) appliesTo(host string) bool {
	if len(e.Hosts) == 0 {
		return true
	}
	for _, g := range e.Hosts {
		if ok, _ := path.Match(g, host); ok {
			return true
		}
	}
	return false
}

func (e *Exception) coversCVE(id string) bool {
	for _, c := range e.CVEs {
		if c == "*" || c == id {
			return true
		}
	}
	return false
}

func (e *Exception) coversRule(id string) bool {
	if len(e.Rules) == 0 {
		return true
	}
	for _, r := range e.Rules {
		if r == id {
			return true
		}
	}
	return false
}
