// Package deptest holds the test that keeps Stent's layers apart: what each
// package and binary may not link (directly or through anything it
// imports), which packages may import the host-only ones, and where the
// package mains live (cmd/ for the shipped binaries, internal/tools/ for
// the rest). It has no code of its own; see layers_test.go.
//
// The layers, bottom up: the parsers and types (inventory, elfdiff,
// bundle, api) link nothing of the kernel runtime; the builder (build),
// the feeds and planner (vuln, policy) and the control server (server,
// store) build on them; only what runs on a host (patcher and kmod, klp,
// kinfo under it; inventory/collect; agent; the stent and stent-tools
// binaries) reads /proc and /sys or makes module syscalls.
package deptest
