package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stent-dev/stent/internal/charclass"
)

// FormatVersion is the manifest schema version this package writes and the
// only one it reads.
const FormatVersion = 1

// Manifest describes the livepatch module in a bundle. It is stored as JSON
// inside the bundle and covered by the signature byte for byte.
type Manifest struct {
	FormatVersion int    `json:"format_version"`
	Name          string `json:"name"` // livepatch module name; equals the .ko's modinfo name=
	Kernel        Kernel `json:"kernel"`
	// Level orders cumulative patches: a higher level replaces a lower one.
	Level int64 `json:"level"`
	// Replace is true for a cumulative patch, loaded with klp_patch.replace
	// set so that it atomically replaces every livepatch already applied.
	Replace     bool       `json:"replace"`
	CVEs        []string   `json:"cves,omitempty"`
	Functions   []Function `json:"functions"`
	Description string     `json:"description"`
	Created     time.Time  `json:"created,omitzero"` // RFC 3339, UTC
	// Effective is the kernel the host reports running (stent uname) once
	// the patch is applied.
	Effective    *Effective `json:"effective,omitempty"`
	ModuleSHA256 string     `json:"module_sha256"` // lowercase hex sha256 of the module bytes
	ModuleSize   int64      `json:"module_size"`
	SourceSHA256 string     `json:"source_sha256,omitempty"` // sha256 of the source patch, filled by the builder
}

// Kernel identifies the one kernel build a patch applies to.
type Kernel struct {
	Release string `json:"release"` // uname -r, e.g. "6.1.0-56-amd64"
	// BuildID is the lowercase hex GNU build-id of vmlinux, as found in
	// /sys/kernel/notes. Optional; when present the host must match it.
	BuildID        string `json:"build_id,omitempty"`
	PackageVersion string `json:"package_version,omitempty"` // e.g. "6.1.192-2"
}

// Function is one function the patch replaces (a klp_func).
type Function struct {
	Object string `json:"object"` // "vmlinux" or the name of the module holding the function
	Name   string `json:"name"`   // symbol name, e.g. "nft_verdict_init" or "foo.isra.0"
	// Sympos disambiguates a symbol name that occurs more than once in
	// Object (klp_func.old_sympos); 0 means the name is unique.
	Sympos int64 `json:"sympos,omitempty"`
}

// Effective is the kernel version a host reports once the patch is applied.
type Effective struct {
	PackageVersion string `json:"package_version"`          // e.g. "6.1.192-3"
	VersionString  string `json:"version_string,omitempty"` // /proc/version text to report, optional
}

// Field limits. Kernel ABI limits are named after their kernel constants.
const (
	moduleNameMax  = 55  // MODULE_NAME_LEN (64 - sizeof(long)) less the NUL
	ksymNameMax    = 511 // KSYM_NAME_LEN (512) less the NUL
	releaseMax     = 64  // sizeof(utsname.release) less the NUL
	versionMax     = 128
	versionStrMax  = 256
	descriptionMax = 8192
	functionsMax   = 10000
	cvesMax        = 1000
	levelMax       = 1<<31 - 1
	jsonDepthMax   = 16
)

// The syntaxes of manifest fields, as character classes.
var (
	alnum       = charclass.New("A-Za-z0-9")
	word        = charclass.New("A-Za-z0-9_")
	symLead     = charclass.New("A-Za-z_.$")
	symRest     = charclass.New("A-Za-z0-9_.$")
	releaseRest = charclass.New("A-Za-z0-9._+~-")
	versionRest = charclass.New("A-Za-z0-9.+~:_-")
	lowerHex    = charclass.New("0-9a-f")
	digits      = charclass.New("0-9")
	jsonKey     = charclass.New("a-z0-9_")
)

func isModuleName(s string) bool { return s != "" && word.All(s) }
func isSymbol(s string) bool     { return charclass.Word(s, symLead, symRest, 0) }
func isRelease(s string) bool    { return charclass.Word(s, alnum, releaseRest, 0) }
func isPkgVersion(s string) bool { return charclass.Word(s, alnum, versionRest, 0) }
func isSHA256(s string) bool     { return len(s) == 64 && lowerHex.All(s) }
func isJSONKey(s string) bool    { return s != "" && jsonKey.All(s) }
func isBuildID(s string) bool {
	return len(s)%2 == 0 && len(s) >= 8 && len(s) <= 128 && lowerHex.All(s)
}

// cveParts splits "CVE-YYYY-NNNN..." into its year and number (4 to 19
// digits); ok is false for anything else.
func cveParts(id string) (year, num string, ok bool) {
	rest, found := strings.CutPrefix(id, "CVE-")
	if !found {
		return "", "", false
	}
	year, num, found = strings.Cut(rest, "-")
	if !found || len(year) != 4 || !digits.All(year) || len(num) < 4 || len(num) > 19 || !digits.All(num) {
		return "", "", false
	}
	return year, num, true
}

// DecodeManifest decodes manifest JSON strictly: valid UTF-8, one object,
// no unknown, duplicate or differently-cased keys, no trailing data. It does
// not validate field values; see Validate.
func DecodeManifest(data []byte) (*Manifest, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: manifest is not valid UTF-8", ErrMalformed)
	}
	// encoding/json matches keys case-insensitively and lets a repeated key
	// win silently. The manifest is signed as bytes, so two readers must not
	// be able to see different values: refuse both before decoding.
	if err := checkKeys(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, manifestJSONErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: manifest: data after the JSON object", ErrMalformed)
	}
	return &m, nil
}

// manifestJSONErr turns encoding/json's errors into field-named ones.
func manifestJSONErr(err error) error {
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &FieldError{Field: name, Msg: "unknown field (format version 1 has no such field; check its spelling)", Err: ErrInvalidManifest}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Type != nil {
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return &FieldError{Field: field, Msg: fmt.Sprintf("got a JSON %s, want %s", te.Value, jsonKind(te.Type.Kind().String())), Err: ErrInvalidManifest}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: manifest JSON at byte %d: %v", ErrMalformed, se.Offset, err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: manifest JSON ends early", ErrMalformed)
	}
	// Time parse errors land here; the message names the value.
	return fmt.Errorf("%w: manifest: %v", ErrInvalidManifest, err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "uint32":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "struct", "ptr":
		return "an object"
	}
	return goKind
}

// checkKeys walks the JSON tokens and refuses duplicate keys, keys that are
// not lowercase snake_case ASCII, nesting deeper than jsonDepthMax and a top
// level that is not an object.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return manifestJSONErr(err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%w: manifest is not a JSON object", ErrMalformed)
	}
	if err := walkObject(dec, "", 1); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: manifest: data after the JSON object", ErrMalformed)
	}
	return nil
}

func walkObject(dec *json.Decoder, path string, depth int) error {
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return manifestJSONErr(err)
		}
		key, _ := tok.(string)
		field := key
		if path != "" {
			field = path + "." + key
		}
		if !isJSONKey(key) {
			return &FieldError{Field: strconv.Quote(field), Msg: "keys are lowercase ASCII letters, digits and _", Err: ErrInvalidManifest}
		}
		if seen[key] {
			return &FieldError{Field: field, Msg: "appears twice", Err: ErrInvalidManifest}
		}
		seen[key] = true
		if err := walkValue(dec, field, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token() // the closing '}'
	if err != nil {
		return manifestJSONErr(err)
	}
	return nil
}

func walkValue(dec *json.Decoder, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return manifestJSONErr(err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= jsonDepthMax {
		return &FieldError{Field: path, Msg: fmt.Sprintf("nested deeper than %d levels", jsonDepthMax), Err: ErrInvalidManifest}
	}
	if d == '{' {
		return walkObject(dec, path, depth+1)
	}
	for i := 0; dec.More(); i++ { // d == '['
		if err := walkValue(dec, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return manifestJSONErr(err)
	}
	return nil
}

// Validate checks every field and returns all problems found, each a
// *FieldError naming the field; errors.Is(err, ErrInvalidManifest) holds. An
// unknown format_version is reported alone, as ErrUnknownVersion, since the
// other fields may mean something else in that version.
func (m *Manifest) Validate() error {
	if m.FormatVersion != FormatVersion {
		return &FieldError{Field: "format_version", Msg: fmt.Sprintf("version %d is not supported (this stent reads version %d)", m.FormatVersion, FormatVersion), Err: ErrUnknownVersion}
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Err: ErrInvalidManifest})
	}
	checkModuleName := func(field, s string) {
		switch {
		case s == "":
			bad(field, "missing")
		case len(s) > moduleNameMax:
			bad(field, "%d bytes, over the kernel's limit of %d", len(s), moduleNameMax)
		case !isModuleName(s):
			bad(field, "%q: a module name is letters, digits and _ only", s)
		}
	}
	checkPattern := func(field, s string, valid func(string) bool, max int, what string) {
		switch {
		case len(s) > max:
			bad(field, "%d bytes, over the limit of %d", len(s), max)
		case !valid(s):
			bad(field, "%q is not %s", s, what)
		}
	}

	checkModuleName("name", m.Name)

	if m.Kernel.Release == "" {
		bad("kernel.release", "missing (the target's uname -r, e.g. 6.1.0-56-amd64)")
	} else {
		checkPattern("kernel.release", m.Kernel.Release, isRelease, releaseMax, "a kernel release (uname -r)")
	}
	if m.Kernel.BuildID != "" {
		checkPattern("kernel.build_id", m.Kernel.BuildID, isBuildID, 128, "a GNU build-id in lowercase hex (4 to 64 bytes)")
	}
	if m.Kernel.PackageVersion != "" {
		checkPattern("kernel.package_version", m.Kernel.PackageVersion, isPkgVersion, versionMax, "a package version")
	}

	if m.Level < 1 || m.Level > levelMax {
		bad("level", "%d is out of range 1..%d", m.Level, levelMax)
	}

	if len(m.CVEs) > cvesMax {
		bad("cves", "%d entries, over the limit of %d", len(m.CVEs), cvesMax)
	} else {
		seen := make(map[string]bool)
		for i, id := range m.CVEs {
			field := fmt.Sprintf("cves[%d]", i)
			year, _, ok := cveParts(id)
			if !ok {
				bad(field, "%q is not a CVE id like CVE-2024-1086", id)
				continue
			}
			if y, _ := strconv.Atoi(year); y < 1999 {
				bad(field, "%q: CVE years start at 1999", id)
			}
			if seen[id] {
				bad(field, "%s is listed twice", id)
			}
			seen[id] = true
		}
	}

	switch {
	case len(m.Functions) == 0:
		bad("functions", "missing: list at least one patched function")
	case len(m.Functions) > functionsMax:
		bad("functions", "%d entries, over the limit of %d", len(m.Functions), functionsMax)
	default:
		type fkey struct {
			obj, name string
			pos       int64
		}
		seen := make(map[fkey]bool)
		for i, f := range m.Functions {
			field := fmt.Sprintf("functions[%d]", i)
			if f.Object != "vmlinux" {
				checkModuleName(field+".object", f.Object)
			}
			if f.Name == "" {
				bad(field+".name", "missing")
			} else {
				checkPattern(field+".name", f.Name, isSymbol, ksymNameMax, "a symbol name")
			}
			if f.Sympos < 0 || f.Sympos > levelMax {
				bad(field+".sympos", "%d is out of range 0..%d", f.Sympos, levelMax)
			}
			k := fkey{f.Object, f.Name, f.Sympos}
			if seen[k] {
				bad(field, "%s:%s (sympos %d) is listed twice", f.Object, f.Name, f.Sympos)
			}
			seen[k] = true
		}
	}

	switch {
	case m.Description == "":
		bad("description", "missing: say what the patch fixes")
	case len(m.Description) > descriptionMax:
		bad("description", "%d bytes, over the limit of %d", len(m.Description), descriptionMax)
	case !printable(m.Description, true):
		bad("description", "has control characters (only newline and tab are allowed)")
	}

	if m.Created.IsZero() {
		bad("created", "missing (RFC 3339 UTC time, e.g. 2025-01-31T12:00:00Z)")
	} else if _, off := m.Created.Zone(); off != 0 {
		bad("created", "%s is not UTC: write it with a Z suffix", m.Created.Format(time.RFC3339))
	} else if y := m.Created.Year(); y < 2000 || y > 9999 {
		bad("created", "year %d is out of range 2000..9999", y)
	}

	if e := m.Effective; e != nil {
		if e.PackageVersion == "" {
			bad("effective.package_version", "missing (effective is optional, but when present names the package version)")
		} else {
			checkPattern("effective.package_version", e.PackageVersion, isPkgVersion, versionMax, "a package version")
		}
		switch {
		case len(e.VersionString) > versionStrMax:
			bad("effective.version_string", "%d bytes, over the limit of %d", len(e.VersionString), versionStrMax)
		case !printable(e.VersionString, false):
			bad("effective.version_string", "has control characters")
		}
	}

	if m.ModuleSHA256 == "" {
		bad("module_sha256", "missing")
	} else if !isSHA256(m.ModuleSHA256) {
		bad("module_sha256", "%q is not a sha256 in lowercase hex", m.ModuleSHA256)
	}
	if m.ModuleSize < 1 || m.ModuleSize > MaxModuleSize {
		bad("module_size", "%d is out of range 1..%d", m.ModuleSize, MaxModuleSize)
	}
	if m.SourceSHA256 != "" && !isSHA256(m.SourceSHA256) {
		bad("source_sha256", "%q is not a sha256 in lowercase hex", m.SourceSHA256)
	}
	return errors.Join(errs...)
}

// printable reports whether s has no control characters nor bidirectional
// overrides; newline and tab are allowed when multiline is set. Manifest
// text is printed to terminals and reviewed by people.
func printable(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		switch {
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0, r == utf8.RuneError:
			return false
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return false // bidirectional overrides can make text read differently
		}
	}
	return true
}

// clone returns a deep copy of m.
func (m *Manifest) clone() *Manifest {
	c := *m
	c.CVEs = append([]string(nil), m.CVEs...)
	c.Functions = append([]Function(nil), m.Functions...)
	if m.Effective != nil {
		e := *m.Effective
		c.Effective = &e
	}
	return &c
}
