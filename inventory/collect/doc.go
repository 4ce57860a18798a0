// Package collect reads an inventory.Inventory from a host: /etc/os-release,
// /proc, the dpkg status file or the rpmdb, /boot, /proc/PID/maps, and the
// live patches the runtime (package patcher) has applied.
//
// Host takes the filesystem root to read, "/" on the host itself, so tests
// run it on fake trees under testdata/. It links the live patch runtime and
// the SQLite driver (for the rpmdb); only the commands that run on a host
// (stent inventory, stent agent) import it, and the layering test in
// internal/deptest keeps it that way.
package collect
