package kmod

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// testdata/fake_modinfo.o is testdata/fake_modinfo.c compiled once by
// Debian 12's gcc 12.2 (gcc -c), so that the tests that only read a module
// run without a compiler; the tests that compile variants run where gcc
// is. The seeds of FuzzModInfo under testdata/fuzz are made from it. Remake
// both after changing the source:
//
//go:generate go test -run ^TestFixture$ -update-fixture .

var updateFixture = flag.Bool("update-fixture", false, "recompile testdata/fake_modinfo.o with gcc and remake the FuzzModInfo seeds")

const fixtureObj = "testdata/fake_modinfo.o"

// fixture returns the committed module object.
func fixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtureObj)
	if err != nil {
		t.Fatalf("%v (go generate ./kmod remakes it)", err)
	}
	return b
}

// TestFixture: the committed object reads as the module its source
// describes, and the fuzz seeds made from it are there.
func TestFixture(t *testing.T) {
	if *updateFixture {
		if err := os.WriteFile(fixtureObj, compile(t), 0o644); err != nil {
			t.Fatal(err)
		}
		writeSeeds(t)
	}
	info, err := ModInfo(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "stent_lp_test" || !info.Livepatch || info.Release() != "6.1.0-56-amd64" || info.License != "GPL" || info.Signed {
		t.Errorf("ModInfo(%s) = %+v", fixtureObj, info)
	}
	for _, s := range seeds(t) {
		if _, err := os.Stat(seedFile(s)); err != nil {
			t.Errorf("fuzz seed %v missing: go generate ./kmod remakes it", err)
		}
	}
}

// seeds are FuzzModInfo's committed seeds: the fixture with a signature
// appended, and with its .modinfo section's size past the end.
func seeds(t testing.TB) [][]byte {
	t.Helper()
	obj := fixture(t)
	sig := []byte("not-a-real-pkcs7")
	signed := append(append([]byte(nil), obj...), sig...)
	trailer := make([]byte, 12)
	binary.BigEndian.PutUint32(trailer[8:], uint32(len(sig)))
	signed = append(append(signed, trailer...), sigMagic...)

	ef, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	shoff := binary.LittleEndian.Uint64(obj[0x28:])
	big := append([]byte(nil), obj...)
	for i, s := range ef.Sections {
		if s.Name == ".modinfo" {
			binary.LittleEndian.PutUint64(big[shoff+uint64(i)*64+0x20:], 1<<40) // sh_size
		}
	}
	return [][]byte{signed, big}
}

func seedFile(b []byte) string {
	return filepath.Join("testdata", "fuzz", "FuzzModInfo", fmt.Sprintf("%x", sha256.Sum256(b))[:16])
}

// writeSeeds writes seeds in go test's corpus format, after removing the
// seeds of an earlier generation (not the failing inputs go test saved:
// their names are longer).
func writeSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzModInfo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "????????????????"))
	for _, f := range old {
		os.Remove(f)
	}
	for _, s := range seeds(t) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		if err := os.WriteFile(seedFile(s), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
