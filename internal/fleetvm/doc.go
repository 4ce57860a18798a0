// Package fleetvm holds the real-system tests of kernel updates and
// reboots: Debian 12 hosts booted from their own disks under QEMU
// (internal/debvm), with Stent installed from its .deb and enrolled with a
// stent-server on the host, driven through the server's admin API and
// judged from the hosts' consoles.
package fleetvm
