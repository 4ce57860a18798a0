package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stent-dev/stent/vuln"
)

// SchemaVersion is the version of the policy file format.
const SchemaVersion = 1

// Rule kinds.
const (
	KindUrgent       = "urgent"         // urgent CVEs: live patch or reboot within the deadline
	KindMaxKernelAge = "max-kernel-age" // no released fix left unbooted longer than Within
	KindFixWithin    = "fix-within"     // CVEs of the given severities fixed within Within of the fix's release
)

// Rule is one compliance rule.
type Rule struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Which CVEs the rule covers. urgent: CVSS ≥ MinCVSS, or, without a
	// score, severity ≥ UnscoredMin. fix-within: severity in Severities.
	// max-kernel-age: every CVE.
	MinCVSS     float64      `json:"min_cvss,omitempty"`
	UnscoredMin vuln.Level   `json:"unscored_min_severity,omitempty"`
	Severities  []vuln.Level `json:"severities,omitempty"`
	// Within is the deadline, counted from the first remedy's release.
	Within Duration `json:"within"`
	// LivePatchCounts: an applied live patch satisfies the rule.
	LivePatchCounts bool   `json:"live_patch_counts"`
	Reference       string `json:"reference,omitempty"`
}

// Duration is a time.Duration written as "48h", "30d" or "2w".
type Duration time.Duration

func (d Duration) String() string {
	td := time.Duration(d)
	switch {
	case td > 0 && td%(7*24*time.Hour) == 0:
		return strconv.Itoa(int(td/(7*24*time.Hour))) + "w"
	case td > 0 && td%(24*time.Hour) == 0:
		return strconv.Itoa(int(td/(24*time.Hour))) + "d"
	}
	return td.String()
}

// ParseDuration reads "48h", "30d", "2w" or any time.ParseDuration form.
func ParseDuration(s string) (Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("duration %q: want a positive number of days or weeks", s)
			}
			return Duration(time.Duration(v * float64(unit))), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("duration %q: want a positive duration such as 48h, 30d or 2w", s)
	}
	return Duration(d), nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Policy is the rules, windows and exceptions in force.
type Policy struct {
	Presets    []string    `json:"presets"`
	Rules      []Rule      `json:"rules"`
	Windows    []Window    `json:"windows,omitempty"`
	Exceptions []Exception `json:"exceptions,omitempty"`
	// FallbackKernels is how many kernels besides the running and the
	// newest one "remove old kernels" keeps.
	FallbackKernels int `json:"fallback_kernels"`
	// MaxInventoryAgeDays is how old a host's inventory may be before the
	// plan stops trusting it: such a host is never compliant.
	MaxInventoryAgeDays int `json:"max_inventory_age_days"`
	// Unattended are the action kinds stent-server carries out without an
	// operator's approval (apply-livepatch, emergency-reboot, reboot);
	// the server proposes the others and waits. Empty: everything waits.
	Unattended []string `json:"unattended,omitempty"`
}

// UnattendedKinds are the action kinds stent-server can carry out itself:
// through a rollout of the live patch, or the kernel rollout and reboot
// scheduler.
var UnattendedKinds = []string{ActApplyLivePatch, ActEmergencyReboot, ActReboot}

// AllowsUnattended tells whether the policy lets the server carry out
// actions of kind without approval.
func (p *Policy) AllowsUnattended(kind string) bool {
	for _, k := range p.Unattended {
		if k == kind {
			return true
		}
	}
	return false
}

// Rule returns the rule with id, or nil.
func (p *Policy) Rule(id string) *Rule {
	for i := range p.Rules {
		if p.Rules[i].ID == id {
			return &p.Rules[i]
		}
	}
	return nil
}

var day = 24 * time.Hour

// Presets are the built-in rule sets. "default" is in force unless a
// policy file leaves it out of its presets list.
var Presets = map[string][]Rule{
	"default": {
		{ID: "urgent", Kind: KindUrgent, MinCVSS: 7.0, UnscoredMin: vuln.LevelHigh, Within: Duration(48 * time.Hour), LivePatchCounts: true,
			Reference: "Stent default: CVSS ≥ 7.0 is urgent, live patch or reboot within 48 h"},
		{ID: "max-kernel-age", Kind: KindMaxKernelAge, Within: Duration(30 * day), LivePatchCounts: false,
			Reference: "Stent default: no kernel left unpatched longer than 30 days; live patches buy time but do not count"},
	},
	"pci-dss": {
		{ID: "pci-dss-6.3.3", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelCritical, vuln.LevelHigh}, Within: Duration(30 * day), LivePatchCounts: true,
			Reference: "PCI DSS v4.0 requirement 6.3.3: critical and high security patches installed within one month of release"},
	},
	"iso27001": {
		{ID: "iso27001-critical", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelCritical}, Within: Duration(14 * day), LivePatchCounts: true,
			Reference: "ISO/IEC 27001:2022 Annex A 8.8 (timeframe set by Stent's preset; the standard leaves it to the organisation)"},
		{ID: "iso27001-high", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelHigh}, Within: Duration(30 * day), LivePatchCounts: true,
			Reference: "ISO/IEC 27001:2022 Annex A 8.8 (timeframe set by Stent's preset)"},
		{ID: "iso27001-medium", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelMedium}, Within: Duration(90 * day), LivePatchCounts: true,
			Reference: "ISO/IEC 27001:2022 Annex A 8.8 (timeframe set by Stent's preset)"},
	},
	"nist": {
		{ID: "nist-critical", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelCritical}, Within: Duration(15 * day), LivePatchCounts: true,
			Reference: "NIST SP 800-53 RA-5/SI-2 with CISA BOD 19-02 timeframes: critical within 15 days"},
		{ID: "nist-high", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelHigh}, Within: Duration(30 * day), LivePatchCounts: true,
			Reference: "NIST SP 800-53 RA-5/SI-2 with CISA BOD 19-02 timeframes: high within 30 days"},
		{ID: "nist-medium", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelMedium}, Within: Duration(90 * day), LivePatchCounts: true,
			Reference: "NIST SP 800-53 RA-5/SI-2 with FedRAMP continuous monitoring timeframes: moderate within 90 days"},
		{ID: "nist-low", Kind: KindFixWithin, Severities: []vuln.Level{vuln.LevelLow}, Within: Duration(180 * day), LivePatchCounts: true,
			Reference: "NIST SP 800-53 RA-5/SI-2 with FedRAMP continuous monitoring timeframes: low within 180 days"},
	},
}

// Default returns the policy in force without a policy file.
func Default() *Policy {
	p, err := build(policyFile{SchemaVersion: SchemaVersion})
	if err != nil {
		panic(err)
	}
	return p
}

// policyFile is the JSON form of a policy (see docs/policy.md).
type policyFile struct {
	SchemaVersion   int             `json:"schema_version"`
	Presets         []string        `json:"presets"`
	Rules           []ruleFile      `json:"rules"`
	Windows         []windowFile    `json:"windows"`
	Exceptions      []exceptionFile `json:"exceptions"`
	FallbackKernels *int            `json:"fallback_kernels"`
	MaxInventoryAge *int            `json:"max_inventory_age_days"`
	Unattended      []string        `json:"unattended"`
}

type ruleFile struct {
	ID              string       `json:"id"`
	Kind            string       `json:"kind"`
	MinCVSS         *float64     `json:"min_cvss"`
	UnscoredMin     *vuln.Level  `json:"unscored_min_severity"`
	Severities      []vuln.Level `json:"severities"`
	Within          *Duration    `json:"within"`
	LivePatchCounts *bool        `json:"live_patch_counts"`
	Reference       *string      `json:"reference"`
	Disabled        bool         `json:"disabled"`
}

// Parse reads a policy file. name names it in errors, which give the line
// and column of what is wrong and the field: "policy p.json:7:5:
// rules[1].kind: ...".
func Parse(name string, r io.Reader) (*Policy, error) {
	data, err := io.ReadAll(io.LimitReader(r, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", name, err)
	}
	at := func(off int64) string {
		line, col := lineCol(data, off)
		return fmt.Sprintf("%s:%d:%d", name, line, col)
	}
	var f policyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("policy %s: %w", at(se.Offset), err)
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "the policy"
			}
			return nil, fmt.Errorf("policy %s: %s: want a JSON %s, not %s", at(te.Offset), field, te.Type, te.Value)
		}
		// A value's own parser (a duration, a severity) failed: find the
		// field by decoding again field by field.
		if off, path, ok := badValue(data); ok {
			return nil, fmt.Errorf("policy %s: %s: %w", at(off), path, err)
		}
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	if off, path, ok := unknownField(data, reflect.TypeFor[policyFile]()); !ok {
		key := path[strings.LastIndexAny(path, ".]")+1:]
		return nil, fmt.Errorf("policy %s: %s: unknown field %q (docs/policy.md lists the fields)", at(off), path, key)
	}
	if f.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("policy %s: schema_version %d, this stent reads %d", at(valueOffset(data, "schema_version")), f.SchemaVersion, SchemaVersion)
	}
	p, err := build(f)
	if err != nil {
		// Errors start with the field's path: "rules[1].kind: ...".
		path := fieldPath.FindString(err.Error())
		return nil, fmt.Errorf("policy %s: %w", at(valueOffset(data, path)), err)
	}
	return p, nil
}

// fieldPath is the path an error of build starts with.
var fieldPath = regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[a-z_]+)?`)

// valueOffset is the offset of the value at path ("rules[1].kind", "presets")
// in data, or of the deepest part of it that exists; 0 when none does.
func valueOffset(data []byte, path string) int64 {
	var segs []any
	for _, part := range strings.Split(path, ".") {
		key, idx, ok := strings.Cut(part, "[")
		if key != "" {
			segs = append(segs, key)
		}
		if ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			segs = append(segs, n)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	best := int64(0)
	for _, seg := range segs {
		t, err := dec.Token()
		if err != nil {
			return best
		}
		found := false
		switch want := seg.(type) {
		case string:
			if t != json.Delim('{') {
				return best
			}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return best
				}
				if kt == want {
					best, found = skipSpace(data, dec.InputOffset()), true
					break
				}
				var skip json.RawMessage
				if dec.Decode(&skip) != nil {
					return best
				}
			}
		case int:
			if t != json.Delim('[') {
				return best
			}
			for i := 0; dec.More(); i++ {
				if i == want {
					best, found = skipSpace(data, dec.InputOffset()), true
					break
				}
				var skip json.RawMessage
				if dec.Decode(&skip) != nil {
					return best
				}
			}
		}
		if !found {
			return best
		}
	}
	return best
}

// badValue finds the first field of a policy file whose value fails its
// own parser (a duration, a severity, a time), by decoding each top-level
// field, and each element of an array, on its own.
func badValue(data []byte) (int64, string, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return 0, "", false
	}
	ft := reflect.TypeFor[policyFile]()
	for key, raw := range top {
		t, ok := jsonField(ft, key)
		if !ok {
			continue
		}
		if json.Unmarshal(raw, reflect.New(t).Interface()) == nil {
			continue
		}
		if t.Kind() == reflect.Slice {
			var elems []json.RawMessage
			if json.Unmarshal(raw, &elems) == nil {
				for i, e := range elems {
					if json.Unmarshal(e, reflect.New(t.Elem()).Interface()) != nil {
						path := fmt.Sprintf("%s[%d]", key, i)
						return valueOffset(data, path), path, true
					}
				}
			}
		}
		return valueOffset(data, key), key, true
	}
	return 0, "", false
}

func lineCol(data []byte, off int64) (int, int) {
	line, col := 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

func build(f policyFile) (*Policy, error) {
	p := &Policy{FallbackKernels: 1, MaxInventoryAgeDays: 7, Presets: f.Presets}
	if p.Presets == nil {
		p.Presets = []string{"default"}
	}
	for _, name := range p.Presets {
		rules, ok := Presets[name]
		if !ok {
			var names []string
			for n := range Presets {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("presets: unknown preset %q (have %s)", name, strings.Join(names, ", "))
		}
		for _, r := range rules {
			if p.Rule(r.ID) == nil {
				r.Severities = append([]vuln.Level(nil), r.Severities...)
				p.Rules = append(p.Rules, r)
			}
		}
	}
	for i, rf := range f.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		if rf.ID == "" {
			return nil, fmt.Errorf("%s.id: missing required field", field)
		}
		if rf.Disabled {
			kept := p.Rules[:0]
			found := false
			for _, r := range p.Rules {
				if r.ID == rf.ID {
					found = true
					continue
				}
				kept = append(kept, r)
			}
			if !found {
				return nil, fmt.Errorf("%s: disables %q, which no preset defines", field, rf.ID)
			}
			p.Rules = kept
			continue
		}
		r := p.Rule(rf.ID)
		if r == nil {
			if rf.Kind == "" {
				return nil, fmt.Errorf("%s.kind: missing required field for new rule %q (urgent, max-kernel-age or fix-within)", field, rf.ID)
			}
			p.Rules = append(p.Rules, Rule{ID: rf.ID, Kind: rf.Kind, LivePatchCounts: rf.Kind != KindMaxKernelAge})
			r = &p.Rules[len(p.Rules)-1]
		} else if rf.Kind != "" && rf.Kind != r.Kind {
			return nil, fmt.Errorf("%s.kind: rule %q is %s, cannot become %s", field, rf.ID, r.Kind, rf.Kind)
		}
		if rf.MinCVSS != nil {
			r.MinCVSS = *rf.MinCVSS
		}
		if rf.UnscoredMin != nil {
			r.UnscoredMin = *rf.UnscoredMin
		}
		if rf.Severities != nil {
			r.Severities = rf.Severities
		}
		if rf.Within != nil {
			r.Within = *rf.Within
		}
		if rf.LivePatchCounts != nil {
			r.LivePatchCounts = *rf.LivePatchCounts
		}
		if rf.Reference != nil {
			r.Reference = *rf.Reference
		}
	}
	for i, r := range p.Rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("rules[%d] (%s): %w", i, r.ID, err)
		}
	}
	for i, wf := range f.Windows {
		w, err := wf.build()
		if err != nil {
			return nil, fmt.Errorf("windows[%d]: %w", i, err)
		}
		p.Windows = append(p.Windows, w)
	}
	for i, ef := range f.Exceptions {
		e, err := ef.build(p)
		if err != nil {
			return nil, fmt.Errorf("exceptions[%d]: %w", i, err)
		}
		p.Exceptions = append(p.Exceptions, e)
	}
	if f.FallbackKernels != nil {
		if *f.FallbackKernels < 0 {
			return nil, errors.New("fallback_kernels: must not be negative")
		}
		p.FallbackKernels = *f.FallbackKernels
	}
	if f.MaxInventoryAge != nil {
		if *f.MaxInventoryAge < 1 {
			return nil, errors.New("max_inventory_age_days: must be at least 1")
		}
		p.MaxInventoryAgeDays = *f.MaxInventoryAge
	}
	for i, k := range f.Unattended {
		if !slices.Contains(UnattendedKinds, k) {
			return nil, fmt.Errorf("unattended[%d]: %q: want one of %s (the server carries out only those; the other actions wait for approval)", i, k, strings.Join(UnattendedKinds, ", "))
		}
		if !slices.Contains(p.Unattended, k) {
			p.Unattended = append(p.Unattended, k)
		}
	}
	return p, nil
}

func (r *Rule) validate() error {
	switch r.Kind {
	case KindUrgent:
		if r.MinCVSS <= 0 || r.MinCVSS > 10 {
			return fmt.Errorf("min_cvss %v: want a score in (0, 10]", r.MinCVSS)
		}
	case KindMaxKernelAge:
	case KindFixWithin:
		if len(r.Severities) == 0 {
			return errors.New("severities: missing required field")
		}
	default:
		return fmt.Errorf("kind %q: want urgent, max-kernel-age or fix-within", r.Kind)
	}
	if r.Within <= 0 {
		return errors.New("within: missing required field")
	}
	return nil
}

// unrated tells whether the rule selects CVEs by severity and s gives none
// (no score, no distribution urgency): such a CVE may be under the rule,
// so it can never count as compliant with it.
func (r *Rule) unrated(s vuln.Severity) bool {
	return (r.Kind == KindUrgent || r.Kind == KindFixWithin) && !s.Scored && s.Level == vuln.LevelUnknown
}

// covers tells whether the rule applies to a CVE of severity s.
func (r *Rule) covers(s vuln.Severity) bool {
	switch r.Kind {
	case KindUrgent:
		if s.Scored {
			return s.Score >= r.MinCVSS
		}
		return r.UnscoredMin != vuln.LevelUnknown && s.Level >= r.UnscoredMin
	case KindFixWithin:
		for _, l := range r.Severities {
			if s.Level == l {
				return true
			}
		}
		return false
	}
	return true
}
