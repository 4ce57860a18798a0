package kinfo

import "testing"

// The snapshot in ../klp/testdata was taken from Debian's 6.1.0-56-amd64
// under QEMU; its /sys/kernel/notes is the real vmlinux note section.
func TestRealSnapshot(t *testing.T) {
	k, err := Read("../klp/testdata/debian-6.1-stall")
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "6.1.0-56-amd64" || k.PackageVersion != "6.1.192-2" || k.BuildID != "eb4fbcd037e7253717950bf2b93bd5566f47c56f" {
		t.Errorf("Read(real snapshot) = %+v", k)
	}
	tn, err := ReadTaint("../klp/testdata/debian-6.1-stall")
	if err != nil {
		t.Fatal(err)
	}
	if tn.String() != "OEK" {
		t.Errorf("taint of the snapshot = %s, want OEK", tn)
	}
}
