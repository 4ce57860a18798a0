// Package pkgmgr installs, lists and removes the host's kernel packages
// through the host's own package manager: apt on Debian and Ubuntu, dnf on
// the RHEL family.
//
// Every command goes through a Runner, so unit tests replay recorded
// command sequences and outputs; ExecRunner is the real one. Parsing of
// the package manager's output is pure (functions over bytes) and tested
// on output captured from real tools under testdata/. The apt path is also
// tested against real apt-get and dpkg on a temporary root with a local
// repository; the dnf path is tested only against recorded command
// sequences, since no RHEL-family machine runs here.
//
// Safety rules the package keeps: a held or versionlocked kernel package is
// refused, never forced; /boot free space is checked before anything is
// installed; the new kernel's image and initramfs must exist afterwards;
// what was installed is read back from the package database, not from the
// package manager's claims; cleanup never removes the running kernel, the
// last known-good one, a pinned or held one, or the metapackage's target.
// This package never touches the boot loader (see package bootldr).
package pkgmgr
