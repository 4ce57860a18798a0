package policy

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// ErrNotPlan is returned by DecodePlan for a file that is not a plan
// written by stent plan --json, or one of another schema version.
var ErrNotPlan = errors.New("not a stent plan")

// maxPlanSize bounds what DecodePlan reads: a plan of a large fleet runs
// to hundreds of megabytes, a file larger than this is not one.
const maxPlanSize = 2 << 30

// DecodePlan reads a plan written by stent plan --json, so that a report
// can be rendered later or elsewhere without the feeds. name names the
// file in errors, which give its line and column. It refuses anything else
// (an inventory, a report, a plan of another schema version, unknown
// fields) rather than render a report from a partial plan.
func DecodePlan(name string, r io.Reader) (*FleetPlan, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPlanSize+1))
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", name, err)
	}
	if len(data) > maxPlanSize {
		return nil, fmt.Errorf("plan %s: larger than %d bytes: %w", name, maxPlanSize, ErrNotPlan)
	}
	at := func(off int64) string {
		line, col := lineCol(data, off)
		return fmt.Sprintf("%s:%d:%d", name, line, col)
	}
	start := int64(len(data) - len(bytes.TrimLeft(data, " \t\r\n")))
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			// Offset counts the byte in error: point at it, or at the
			// end when the input stopped short.
			off := se.Offset
			if off > 0 && off < int64(len(data)) {
				off--
			}
			return nil, fmt.Errorf("plan %s: %v: %w (write one with stent plan --json)", at(off), err, ErrNotPlan)
		case errors.As(err, &te):
			return nil, fmt.Errorf("plan %s: a JSON %s, not an object: %w (write one with stent plan --json)", at(start), te.Value, ErrNotPlan)
		}
		return nil, fmt.Errorf("plan %s: %w", name, err)
	}
	var format string
	if raw, ok := probe["format"]; ok {
		if err := json.Unmarshal(raw, &format); err != nil {
			return nil, fmt.Errorf("plan %s: format: want the string %q: %w", at(keyOffset(data, "format")), PlanFormat, ErrNotPlan)
		}
	}
	version := -1
	if raw, ok := probe["schema_version"]; ok {
		if err := json.Unmarshal(raw, &version); err != nil {
			return nil, fmt.Errorf("plan %s: schema_version: want an integer: %w", at(keyOffset(data, "schema_version")), ErrNotPlan)
		}
	}
	if format != PlanFormat {
		what := ""
		switch {
		case probe["hosts"] != nil && probe["fleet"] != nil && probe["exposure_by_severity"] != nil:
			what = " (it looks like a report: give stent report --plan the output of stent plan --json)"
		case probe["hosts"] != nil && probe["fleet"] != nil && version == 1:
			what = " (it looks like a plan of schema_version 1, written by an older stent without the fixed CVEs the report's history needs: run stent plan --json again)"
		case probe["hostname"] != nil && probe["kernel"] != nil:
			what = " (it looks like an inventory: give it to --inventory, or give --plan the output of stent plan --json)"
		default:
			what = " (write one with stent plan --json)"
		}
		if format == "" {
			return nil, fmt.Errorf("plan %s: no \"format\": %q: %w%s", at(start), PlanFormat, ErrNotPlan, what)
		}
		return nil, fmt.Errorf("plan %s: format %q, want %q: %w%s", at(keyOffset(data, "format")), format, PlanFormat, ErrNotPlan, what)
	}
	if version != PlanSchemaVersion {
		return nil, fmt.Errorf("plan %s: schema_version %d, this stent reads %d: %w (run stent plan --json with this stent again)", at(keyOffset(data, "schema_version")), version, PlanSchemaVersion, ErrNotPlan)
	}
	if off, path, ok := unknownField(data, reflect.TypeFor[FleetPlan]()); !ok {
		return nil, fmt.Errorf("plan %s: %s: unknown field: %w", at(off), path, ErrNotPlan)
	}
	var fp FleetPlan
	if err := json.Unmarshal(data, &fp); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("plan %s: %s: %v", at(te.Offset), te.Field, err)
		}
		return nil, fmt.Errorf("plan %s: %w", name, err)
	}
	if err := fp.validate(); err != nil {
		return nil, fmt.Errorf("plan %s: %w", name, err)
	}
	return &fp, nil
}

// validate checks what a report needs of a decoded plan.
func (fp *FleetPlan) validate() error {
	if fp.GeneratedAt.IsZero() {
		return errors.New("generated_at: missing required field")
	}
	if fp.Policy == nil {
		return errors.New("policy: missing required field")
	}
	for i, r := range fp.Policy.Rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("policy.rules[%d] (%s): %w", i, r.ID, err)
		}
	}
	// Windows carry their parsed form only in memory: parse them again so
	// that the policy read back works like the one written.
	for i, w := range fp.Policy.Windows {
		pw, err := ParseWindow(w.When)
		if err != nil {
			return fmt.Errorf("policy.windows[%d].when: %w", i, err)
		}
		pw.Name, pw.Hosts = w.Name, w.Hosts
		fp.Policy.Windows[i] = pw
	}
	for _, fr := range fp.Fleet {
		if fp.Policy.Rule(fr.Rule) == nil {
			return fmt.Errorf("fleet: rule %q is not in the policy", fr.Rule)
		}
	}
	for i := range fp.Hosts {
		h := &fp.Hosts[i]
		field := fmt.Sprintf("hosts[%d]", i)
		switch {
		case h.Hostname == "":
			return fmt.Errorf("%s.hostname: missing required field", field)
		case h.Kernel.Release == "":
			return fmt.Errorf("%s (%s).kernel.release: missing required field", field, h.Hostname)
		case h.Kernel.BootTime.IsZero():
			return fmt.Errorf("%s (%s).kernel.boot_time: missing required field", field, h.Hostname)
		}
		for j, rr := range h.Compliance {
			if _, ok := statusRank[rr.Status]; !ok {
				return fmt.Errorf("%s (%s).compliance[%d].status %q: want %s, %s, %s or %s", field, h.Hostname, j, rr.Status, Compliant, Excepted, AtRisk, Breached)
			}
			if fp.Policy.Rule(rr.Rule) == nil {
				return fmt.Errorf("%s (%s).compliance[%d].rule %q is not in the policy", field, h.Hostname, j, rr.Rule)
			}
		}
		if len(h.Compliance) != len(fp.Policy.Rules) {
			return fmt.Errorf("%s (%s).compliance: %d rules, the policy has %d", field, h.Hostname, len(h.Compliance), len(fp.Policy.Rules))
		}
	}
	return nil
}

// keyOffset is the offset of the top-level key in data, or 0.
func keyOffset(data []byte, key string) int64 {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	for dec.More() {
		off := dec.InputOffset()
		t, err := dec.Token()
		if err != nil {
			return 0
		}
		if t == key {
			return skipSpace(data, off)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return 0
		}
	}
	return 0
}

// skipSpace moves off past the separators and white space before a token.
func skipSpace(data []byte, off int64) int64 {
	for off < int64(len(data)) && strings.IndexByte(" \t\r\n,:", data[off]) >= 0 {
		off++
	}
	return off
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// unknownField walks data against type t as encoding/json would decode it
// and returns the offset and path of the first object key that t has no
// field for (encoding/json's own error names the key but not where it is).
// ok is true when there is none, or when data does not parse (the decoder
// reports that itself).
func unknownField(data []byte, t reflect.Type) (off int64, path string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	off, path, found := walkValue(dec, data, t, "")
	return off, path, !found
}

func walkValue(dec *json.Decoder, data []byte, t reflect.Type, path string) (int64, string, bool) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	opaque := t == nil || t.Kind() == reflect.Interface ||
		reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
	tok, err := dec.Token()
	if err != nil {
		return 0, "", false
	}
	d, isDelim := tok.(json.Delim)
	if !isDelim {
		return 0, "", false
	}
	var elem reflect.Type
	if !opaque {
		switch t.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map:
			elem = t.Elem()
		}
	}
	switch d {
	case '[':
		for i := 0; dec.More(); i++ {
			if off, p, found := walkValue(dec, data, elem, fmt.Sprintf("%s[%d]", path, i)); found {
				return off, p, true
			}
		}
	case '{':
		for dec.More() {
			keyOff := skipSpace(data, dec.InputOffset())
			kt, err := dec.Token()
			if err != nil {
				return 0, "", false
			}
			key, _ := kt.(string)
			sub := path + "." + key
			if path == "" {
				sub = key
			}
			var ft reflect.Type
			switch {
			case opaque:
			case t.Kind() == reflect.Map:
				ft = elem
				sub = path + "[" + strconv.Quote(key) + "]"
			case t.Kind() == reflect.Struct:
				f, known := jsonField(t, key)
				if !known {
					return keyOff, sub, true
				}
				ft = f
			}
			if off, p, found := walkValue(dec, data, ft, sub); found {
				return off, p, true
			}
		}
	}
	dec.Token() // the closing delimiter
	return 0, "", false
}

// jsonField is the type of the field of struct t that encoding/json
// decodes key into (its tag name, else its name, case-insensitively).
func jsonField(t reflect.Type, key string) (reflect.Type, bool) {
	var fold reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f.Type, true
		}
		if fold == nil && strings.EqualFold(name, key) {
			fold = f.Type
		}
	}
	return fold, fold != nil
}
