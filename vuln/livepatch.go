package vuln

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stent-dev/stent/bundle"
)

// LivePatch is a live patch Stent can apply: its manifest names the exact
// kernel build it is for and the CVEs it fixes. The same JSON shape
// describes an applied patch in the runtime's state folder.
type LivePatch struct {
	Name   string   `json:"name"`
	CVEs   []string `json:"cves"`
	Kernel struct {
		Release string `json:"release"`           // uname -r: "6.1.0-56-amd64"
		Version string `json:"version,omitempty"` // package version: "6.1.192-2"; empty matches any build of Release
	} `json:"kernel"`
	Released time.Time `json:"released,omitempty"`
}

// ParseLivePatches parses one manifest or a JSON array of manifests.
func ParseLivePatches(file string, data []byte) ([]LivePatch, error) {
	var list []LivePatch
	trim := bytes.TrimLeft(data, " \t\r\n")
	isArray := len(trim) > 0 && trim[0] == '['
	if isArray {
		if err := strictJSON(data, &list); err != nil {
			return nil, jsonError(file, data, err)
		}
	} else {
		var p LivePatch
		if err := strictJSON(data, &p); err != nil {
			return nil, jsonError(file, data, err)
		}
		list = []LivePatch{p}
	}
	// A second, untyped pass tells a missing "cves" from an empty one.
	var raw []map[string]json.RawMessage
	if isArray {
		_ = json.Unmarshal(data, &raw)
	} else {
		var m map[string]json.RawMessage
		_ = json.Unmarshal(data, &m)
		raw = []map[string]json.RawMessage{m}
	}
	for i, p := range list {
		prefix := ""
		if isArray {
			prefix = fmt.Sprintf("[%d].", i)
		}
		if p.Name == "" {
			return nil, missing(file, prefix+"name")
		}
		if p.Kernel.Release == "" {
			return nil, missing(file, prefix+"kernel.release")
		}
		if i < len(raw) {
			if _, ok := raw[i]["cves"]; !ok {
				return nil, missing(file, prefix+"cves")
			}
		}
		for j, id := range p.CVEs {
			if !cveIDPattern.MatchString(id) {
				return nil, &ParseError{File: file, Field: fmt.Sprintf("%scves[%d]", prefix, j), Err: fmt.Errorf("%q is not a CVE id", id)}
			}
		}
	}
	return list, nil
}

// Applies tells whether the patch was built for a kernel: the same release
// and, when the manifest names one, the same package version (a same-ABI
// rebuild is a different kernel).
func (p *LivePatch) Applies(release, version string) bool {
	return p.Kernel.Release == release && (p.Kernel.Version == "" || p.Kernel.Version == version)
}

// isBundle tells whether data is a signed bundle (bundle.Magic) rather than
// a manifest.
func isBundle(data []byte) bool { return bytes.HasPrefix(data, []byte(bundle.Magic)) }

// LivePatchOf is the live patch a verified bundle's manifest describes.
func LivePatchOf(m *bundle.Manifest) LivePatch {
	p := LivePatch{Name: m.Name, CVEs: append([]string(nil), m.CVEs...), Released: m.Created}
	p.Kernel.Release, p.Kernel.Version = m.Kernel.Release, m.Kernel.PackageVersion
	return p
}

// parseLivePatchBundle verifies the bundle in data against the keyring
// keys returns and gives its manifest as a live patch. A bundle that does
// not verify is refused, like a malformed manifest: a plan must not count
// on a patch no host would load.
func parseLivePatchBundle(file string, data []byte, keys func() (*bundle.Keyring, error)) (LivePatch, error) {
	b, err := bundle.Parse(data)
	if err != nil {
		return LivePatch{}, &ParseError{File: file, Err: err}
	}
	if keys == nil {
		return LivePatch{}, &ParseError{File: file, Err: errors.New("a bundle, and no trusted keys to verify it with were given")}
	}
	kr, err := keys()
	if err != nil {
		return LivePatch{}, fmt.Errorf("%s: trusted keys to verify the bundle: %w", file, err)
	}
	if err := b.Verify(kr); err != nil {
		return LivePatch{}, &ParseError{File: file, Err: fmt.Errorf("%w (trust its publisher's key with --keys-dir)", err)}
	}
	return LivePatchOf(b.Manifest()), nil
}
