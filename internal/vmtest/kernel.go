package vmtest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/safeelf"
)

// xenElfNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the ELF note through
// which a vmlinux built with CONFIG_PVH tells QEMU its 32-bit PVH entry
// point.
const xenElfNotePhys32Entry = 18

// bootImage returns the kernel file to hand to QEMU's -kernel: the
// uncompressed vmlinux, extracted once into the cache, when the image is an
// xz-compressed bzImage of a CONFIG_PVH kernel (QEMU then enters it through
// its PVH entry point, which saves the ~2 s the emulated CPU spends
// decompressing the kernel); else the vmlinuz itself.
func bootImage(ctx context.Context, k *kpkg.Kernel) string {
	cache, err := kpkg.CacheDir()
	if err != nil {
		return k.Vmlinuz
	}
	out := filepath.Join(cache, "vmtest", k.ABI, "vmlinux")
	if hasPVHNote(out) == nil {
		return out
	}
	unlock, err := kpkg.Lock(ctx, filepath.Join(cache, "locks", "vmlinux-"+k.ABI+".lock"))
	if err != nil {
		return k.Vmlinuz
	}
	defer unlock()
	if hasPVHNote(out) == nil {
		return out
	}
	if err := extractVmlinux(ctx, k.Vmlinuz, out); err != nil {
		return k.Vmlinuz
	}
	return out
}

// extractVmlinux decompresses the xz payload of the bzImage at vmlinuz
// into out, atomically, and checks it is a PVH-bootable ELF file.
func extractVmlinux(ctx context.Context, vmlinuz, out string) error {
	data, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	i := bytes.Index(data, []byte("\xfd7zXZ\x00"))
	if i < 0 {
		return errors.New("no xz payload")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".vmlinux-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(data[i:])
	cmd.Stdout = tmp
	err = cmd.Run()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("xz -d: %w", err)
	}
	if err := hasPVHNote(tmp.Name()); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// hasPVHNote checks that path is an x86-64 ELF kernel with a PVH entry note.
func hasPVHNote(path string) error {
	f, err := safeelf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s: not x86-64", path)
	}
	return f.Do(func() error {
		for _, p := range f.Progs {
			if p.Type != elf.PT_NOTE {
				continue
			}
			b, err := io.ReadAll(p.Open()) // what the file holds, whatever Filesz claims
			if err != nil {
				return err
			}
			if uint64(len(b)) < p.Filesz {
				return fmt.Errorf("%s: note segment at offset %#x runs past the end of the file", path, p.Off)
			}
			for len(b) >= 12 {
				namesz := binary.LittleEndian.Uint32(b[0:])
				descsz := binary.LittleEndian.Uint32(b[4:])
				typ := binary.LittleEndian.Uint32(b[8:])
				n := 12 + int(align4(namesz)) + int(align4(descsz))
				if n > len(b) || n < 12 {
					break
				}
				if typ == xenElfNotePhys32Entry && bytes.HasPrefix(b[12:], []byte("Xen\x00")) {
					return nil
				}
				b = b[n:]
			}
		}
		return fmt.Errorf("%s: no PVH entry note", path)
	})
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }
