package vmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/testenv"
)

// TestCPIO writes an archive and lists it with the host's cpio tool.
func TestCPIO(t *testing.T) {
	testenv.NeedTools(t, "cpio") // checks the archive
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatal(err)
	}
	a := newCPIO()
	a.Dir("/tmp", 0o1777)
	a.File("/etc/stent/keys/a.pub", []byte("key\n"), 0o600)
	a.File("odd", []byte("12345"), 0o644) // length not a multiple of 4
	a.Symlink("/bin/sh", "/bin/busybox")
	a.CharDev("/dev/console", 0o600, 5, 1)
	a.Dir("/etc/stent", 0o755) // already added as a parent: not repeated
	b := a.Bytes()
	if len(b)%512 != 0 {
		t.Errorf("archive length %d is not a multiple of 512", len(b))
	}
	cmd := exec.Command(cpio, "-it", "--quiet")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	want := []string{"tmp", "etc", "etc/stent", "etc/stent/keys", "etc/stent/keys/a.pub", "odd", "bin", "bin/sh", "dev", "dev/console"}
	if diff := cmp.Diff(want, strings.Fields(string(out))); diff != "" {
		t.Errorf("cpio -it mismatch (-want +got):\n%s", diff)
	}

	// Extract the regular files and the link, and check their contents.
	dir := t.TempDir()
	a = newCPIO()
	a.File("/etc/stent/keys/a.pub", []byte("key\n"), 0o600)
	a.File("odd", []byte("12345"), 0o644)
	a.Symlink("/bin/sh", "busybox")
	cmd = exec.Command(cpio, "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(a.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	for path, want := range map[string]string{"etc/stent/keys/a.pub": "key\n", "odd": "12345"} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || string(got) != want {
			t.Errorf("extracted %s = %q, %v, want %q", path, got, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "etc/stent/keys/a.pub")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of a.pub = %v, %v, want 0600", fi.Mode(), err)
	}
	if got, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || got != "busybox" {
		t.Errorf("bin/sh -> %q, %v, want busybox", got, err)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"/bin/sh": "bin/sh", "bin//sh": "bin/sh", "/a/../b": "b", "/../../x": "x"} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel", "ext4": "ext4", "virtio_pci.ko": "virtio_pci"} {
		if got := modName(in); got != want {
			t.Errorf("modName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestModulesDep(t *testing.T) {
	order := []string{"kernel/lib/crc16.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"}
	dep := map[string][]string{"kernel/fs/ext4/ext4.ko": {"kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko"}}
	want := "kernel/lib/crc16.ko:\nkernel/fs/jbd2/jbd2.ko:\nkernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\n"
	if got := string(modulesDep(order, dep)); got != want {
		t.Errorf("modulesDep = %q, want %q", got, want)
	}
}

func TestHasPVHNote(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(p, []byte("\x7fELF garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := hasPVHNote(p); err == nil {
		t.Error("hasPVHNote(garbage) = nil, want an error")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := hasPVHNote(self); err == nil {
		t.Error("hasPVHNote(test binary) = nil, want an error")
	}
}

func TestExtraInitramfsRelative(t *testing.T) {
	if _, err := extraInitramfs([]File{{Path: "etc/x"}}, false, false); err == nil {
		t.Error("extraInitramfs with a relative path succeeded")
	}
}

func FuzzHasPVHNote(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	if self, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(self); err == nil && len(b) > 4096 {
			f.Add(b[:4096])
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "k")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_ = hasPVHNote(p) // must not panic
	})
}

// TestResolveModulesOrder: a module's modules.dep list names each module
// before the ones it needs (modprobe loads it from the end), so nfsd's
// auth_rpcgss comes before sunrpc, which both it and lockd need.
func TestResolveModulesOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the modules of a Debian kernel (downloaded when not cached)")
	}
	k, err := kpkg.Fetch(context.Background(), DefaultABI, nil)
	if err != nil {
		testenv.Unavailable(t, "kernel %s: %v", DefaultABI, err)
	}
	_, dep, err := resolveModules(k.ModulesDir, []string{"nfsd"})
	if err != nil {
		t.Fatal(err)
	}
	list := dep["kernel/fs/nfsd/nfsd.ko"]
	pos := map[string]int{}
	for i, p := range list {
		pos[modName(p)] = i
	}
	for _, pair := range [][2]string{{"auth_rpcgss", "sunrpc"}, {"lockd", "sunrpc"}, {"lockd", "grace"}} {
		a, aok := pos[pair[0]]
		b, bok := pos[pair[1]]
		if !aok || !bok || a > b {
			t.Errorf("modules.dep of nfsd = %q: want %s before %s (modprobe loads from the end)", list, pair[0], pair[1])
		}
	}
}
