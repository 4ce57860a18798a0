package build

import (
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/testenv"
)

//go:generate go test -run ^TestVerifyJumps$ -update-verify .

var updateVerify = flag.Bool("update-verify", false, "recompile testdata/verify from jumps.c with gcc and ld")

// verifyFlags are the kernel's code-generation flags that matter here.
var verifyFlags = []string{
	"-O2", "-c", "-pg", "-mfentry", "-mrecord-mcount", "-mcmodel=kernel", "-fno-pic",
	"-fno-asynchronous-unwind-tables", "-mno-red-zone", "-fno-stack-protector", "-w",
}

// jumpsObjects compiles testdata/verify/jumps.c as the builder does and as
// the distribution does, and links the latter at the kernel's address.
func jumpsObjects(t *testing.T) (mine, shipped, vmlinux []byte) {
	t.Helper()
	testenv.NeedTools(t, "gcc", "ld")
	dir := t.TempDir()
	src := filepath.Join("testdata", "verify", "jumps.c")
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("gcc", slices.Concat(verifyFlags, []string{"-ffunction-sections", "-fdata-sections", src, "-o", filepath.Join(dir, "mine.o")})...)
	run("gcc", slices.Concat(verifyFlags, []string{src, "-o", filepath.Join(dir, "shipped.o")})...)
	run("ld", "-o", filepath.Join(dir, "vmlinux"), "-Ttext=0xffffffff81000000", "-e", "deferred",
		"--defsym=sink=0xffffffff81200000", "--defsym=__fentry__=0xffffffff81200040", filepath.Join(dir, "shipped.o"))
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return read("mine.o"), read("shipped.o"), read("vmlinux")
}

var jumpsFiles = []string{"jumps.o", "jumps.shipped.o", "jumps.vmlinux"}

// vmlinuxSymtab is a kallsyms-like table of a linked ELF's symbols.
func vmlinuxSymtab(t *testing.T, vml []byte) *elfdiff.Symtab {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(vml))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	st := &elfdiff.Symtab{Object: "vmlinux"}
	for _, s := range syms {
		if s.Name != "" && elf.ST_TYPE(s.Info) != elf.STT_SECTION && elf.ST_TYPE(s.Info) != elf.STT_FILE {
			st.Syms = append(st.Syms, elfdiff.KSym{Name: s.Name, Addr: s.Value, Type: 'T'})
		}
	}
	return st
}

// TestVerifyJumps: the unpatched source compiled with -ffunction-sections
// reproduces code built without it, whose jumps to neighbouring functions
// are short: from vmlinux (linked, no relocations) and from a module's .ko
// (relocatable, no relocation for a jump within its section). A jump
// that goes elsewhere is still a difference.
func TestVerifyJumps(t *testing.T) {
	if *updateVerify {
		mine, shipped, vml := jumpsObjects(t)
		for i, b := range [][]byte{mine, shipped, vml} {
			if err := os.WriteFile(filepath.Join("testdata", "verify", jumpsFiles[i]), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(t *testing.T, mineB, shippedB, vml []byte) {
		mine, err := elfdiff.Read(mineB)
		if err != nil {
			t.Fatal(err)
		}
		ko, err := elfdiff.Read(shippedB)
		if err != nil {
			t.Fatal(err)
		}
		// The case is the one it means to be: deferred's tail call is a
		// 2-byte jmp without relocation in the shipped object.
		d := ko.Symbol("deferred")
		if d == nil || !bytes.Contains(d.Section.Data[d.Value:d.Value+d.Size], []byte{0x31, 0xff, 0x48, 0x83, 0xc4, 0x08, 0xeb}) {
			t.Fatalf("shipped deferred has no short jmp after xor %%edi,%%edi; add $8,%%rsp")
		}
		funcs := []elfdiff.Func{{Name: "deferred"}, {Name: "restart"}, {Name: "settle"}}
		vmCode, err := vmlinuxCode(vml, vmlinuxSymtab(t, vml))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			code shippedCode
		}{{"vmlinux", vmCode}, {"module", moduleCode(ko, "jumps.c")}} {
			if err := verifyOriginals(mine, funcs, c.code); err != nil {
				t.Errorf("verifyOriginals(%s) = %v", c.name, err)
			}
		}
		// The same jump to the wrong place: 2 bytes further.
		at := bytes.Index(vml, []byte{0x31, 0xff, 0x48, 0x83, 0xc4, 0x08, 0xeb}) + 7
		bad := slices.Clone(vml)
		bad[at] += 2
		vmBad, err := vmlinuxCode(bad, vmlinuxSymtab(t, bad))
		if err != nil {
			t.Fatal(err)
		}
		err = verifyOriginals(mine, funcs, vmBad)
		t.Logf("jump elsewhere in vmlinux: %v", err)
		if !errors.Is(err, ErrNotReproduced) || !strings.Contains(err.Error(), "deferred (differs at +0xf: JMP restart here, JMP 0xffffffff81000002 shipped") {
			t.Errorf("verifyOriginals(vmlinux, jump elsewhere) = %v, want ErrNotReproduced naming deferred's jmp to restart and where the shipped one goes", err)
		}
		at = bytes.Index(d.Section.Data, []byte{0x31, 0xff, 0x48, 0x83, 0xc4, 0x08, 0xeb}) + 7
		d.Section.Data[at] += 2
		err = verifyOriginals(mine, funcs, moduleCode(ko, "jumps.c"))
		t.Logf("jump elsewhere in the module: %v", err)
		if !errors.Is(err, ErrNotReproduced) || !strings.Contains(err.Error(), "deferred (differs at +0xf") {
			t.Errorf("verifyOriginals(module, jump elsewhere) = %v, want ErrNotReproduced naming deferred", err)
		}
	}
	t.Run("committed", func(t *testing.T) {
		var b [3][]byte
		for i, n := range jumpsFiles {
			var err error
			if b[i], err = os.ReadFile(filepath.Join("testdata", "verify", n)); err != nil {
				t.Fatalf("%v (go generate ./build remakes it)", err)
			}
		}
		check(t, b[0], b[1], b[2])
	})
	t.Run("gcc", func(t *testing.T) {
		mine, shipped, vml := jumpsObjects(t)
		check(t, mine, shipped, vml)
	})
}
