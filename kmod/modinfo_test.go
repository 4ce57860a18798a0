package kmod

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
)

// compile builds testdata/fake_modinfo.c into an object with extra flags.
func compile(t testing.TB, flags ...string) []byte {
	t.Helper()
	testenv.NeedTools(t, "gcc") // builds the ELF fixture
	out := filepath.Join(t.TempDir(), "m.o")
	args := append([]string{"-c", "-o", out, "testdata/fake_modinfo.c"}, flags...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestModInfo(t *testing.T) {
	obj := compile(t)
	info, err := ModInfo(obj)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "stent_lp_test" || !info.Livepatch || info.Release() != "6.1.0-56-amd64" || info.License != "GPL" || info.Signed {
		t.Errorf("ModInfo = %+v", info)
	}

	plain, err := ModInfo(compile(t, `-DLIVEPATCH="intree=Y"`))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Livepatch {
		t.Error("ModInfo(plain module).Livepatch = true, want false")
	}

	// An appended signature is recognised and stripped.
	sig := []byte("not-a-real-pkcs7")
	signed := append(append([]byte(nil), obj...), sig...)
	trailer := make([]byte, 12)
	binary.BigEndian.PutUint32(trailer[8:], uint32(len(sig)))
	signed = append(append(signed, trailer...), sigMagic...)
	si, err := ModInfo(signed)
	if err != nil {
		t.Fatal(err)
	}
	if !si.Signed || si.Name != "stent_lp_test" {
		t.Errorf("ModInfo(signed) = %+v", si)
	}
}

func TestModInfoRefuses(t *testing.T) {
	obj := fixture(t)
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello, this is not ELF"),
		"truncated": obj[:200],
		"header":    obj[:64],
	} {
		if _, err := ModInfo(data); !errors.Is(err, ErrNotModule) {
			t.Errorf("ModInfo(%s) err = %v, want ErrNotModule", name, err)
		}
	}
}

func FuzzModInfo(f *testing.F) {
	f.Add(fixture(f))
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ModInfo(data) // must not panic
	})
}
