// Package vmtest boots Debian kernels under QEMU for Stent's tests and lets
// them run commands in the guest.
//
// TODO: measured figures.
package vmtest
