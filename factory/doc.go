// Package factory turns a distribution's kernel security uploads into live
// patches for the kernels a fleet runs, without a person in the common
// case (docs/factory.md).
//
// This file's siblings hold its steps, each usable alone:
//   - fixes.go: an upload's fixes, from the difference between the
//     linux-source packages of the previous and the new upload, split per
//     changelog item and mapped to the CVEs each item names; an upstream
//     stable fix whose kernel CNA record names the 6.1 commit is taken from
//     a configured git repository instead (git.go).
//   - diff.go: the difference of two source trees, file by file.
//
// Parsing (the changelog items, the tree difference, the attribution of
// files to items) is pure; only Extract runs dpkg-deb, diff, patch and git.
package factory
