// Package inventory describes a host for patch planning: its distribution,
// the running kernel and its package version, the installed kernel
// packages, /boot usage, whether and why a reboot is needed, processes
// still mapping deleted or replaced libraries, and the live patches the
// runtime has applied.
//
// It holds the types and their JSON form only, and imports nothing of
// Stent's, so the feed parser, the planner and the server can read
// inventories without linking the live patch runtime. Reading a host is
// package inventory/collect's job. The JSON form of Inventory is what
// `stent plan --inventory FILE` reads, so a fleet's inventories can be
// gathered and planned centrally; it carries a schema version and Decode
// refuses versions it does not know.
package inventory
