package build

import (
	"bytes"
	_ "embed"
)

// HeaderPath is where Stent's header for fix authors goes in the kernel
// tree while the patched objects compile: a fix writes
// #include <stent/livepatch.h> (the syscall, callback and shadow variable
// macros of include/stent/livepatch.h in this folder).
const HeaderPath = "include/stent/livepatch.h"

// Header is include/stent/livepatch.h.
//
//go:embed include/stent/livepatch.h
var Header []byte

// usesHeader reports whether a fix includes Stent's header.
func usesHeader(patch []byte) bool {
	return bytes.Contains(patch, []byte("stent/livepatch.h"))
}
