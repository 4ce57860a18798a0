package vuln

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
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
