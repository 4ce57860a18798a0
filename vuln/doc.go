// Package vuln reads kernel vulnerability feeds (the Debian linux changelog,
// the kernel CNA's CVE records, OSV and NVD) into one indexed database and
// tells, for a host's kernel, the state of every CVE it knows: fixed in the
// running kernel, fixed by an applied live patch, fixed in an installed kernel
// not yet booted, fixed in a released package not yet installed, not fixed
// anywhere yet, not affected, or unknown.
//
// Parsing is pure: every parser takes an io.Reader or a folder and returns
// records or a *ParseError naming the file, position and field. Fetching over
// HTTPS lives in fetch.go and only ever replaces a cached copy with one that
// parsed completely.
package vuln
