package build

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/safeelf"
)

// Vmlinux returns the uncompressed kernel ELF inside a bzImage (vmlinuz),
// caching it at cacheFile. The compressed payload is located through the
// x86 boot protocol header (payload_offset, payload_length) and inflated
// with the matching tool.
func Vmlinux(ctx context.Context, vmlinuz, cacheFile string) ([]byte, error) {
	if b, err := os.ReadFile(cacheFile); err == nil && wholeELF(b) {
		return b, nil
	}
	img, err := os.ReadFile(vmlinuz)
	if err != nil {
		return nil, err
	}
	payload, err := bzPayload(img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", vmlinuz, err)
	}
	out, err := inflate(ctx, payload)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", vmlinuz, err)
	}
	// inflate accepts a decompressor's error when it wrote output (the
	// trailer after the payload upsets some), so a truncated or corrupt
	// payload shows here, before it is cached for every later build.
	if !wholeELF(out) {
		return nil, fmt.Errorf("decompress %s: the payload is not a whole ELF vmlinux (%d bytes; truncated or corrupt image?)", vmlinuz, len(out))
	}
	if err := os.MkdirAll(filepath.Dir(cacheFile), 0o755); err == nil {
		_ = replaceFile(cacheFile, out)
	}
	return out, nil
}

// wholeELF reports whether b is an ELF file whose section headers and
// section contents all lie inside it.
func wholeELF(b []byte) bool {
	if len(b) < 4 || string(b[:4]) != "\x7fELF" {
		return false
	}
	f, err := safeelf.NewBytes("vmlinux", b)
	if err != nil {
		return false
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Type != elf.SHT_NULL && (s.Offset > uint64(len(b)) || s.FileSize > uint64(len(b))-s.Offset) {
			return false
		}
	}
	return true
}

// bzPayload returns the compressed kernel inside a bzImage.
func bzPayload(img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not an x86 bzImage (no HdrS boot header)")
	}
	setup := int(img[0x1f1])
	if setup == 0 {
		setup = 4
	}
	off := int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	start := (setup+1)*512 + off
	if off == 0 || n <= 0 || start < 0 || start+n > len(img) {
		return nil, fmt.Errorf("bzImage payload at %#x (+%#x bytes) lies outside the %d-byte image", start, n, len(img))
	}
	return img[start : start+n], nil
}

func inflate(ctx context.Context, p []byte) ([]byte, error) {
	var tool []string
	switch {
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		tool = []string{"xz", "-dc", "--single-stream"}
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		tool = []string{"zstd", "-dc"}
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		return io.ReadAll(zr)
	case bytes.HasPrefix(p, []byte{0x5d, 0, 0}):
		tool = []string{"xz", "-dc", "--format=lzma"}
	default:
		return nil, fmt.Errorf("unknown compression (magic % x)", p[:min(6, len(p))])
	}
	cmd := exec.CommandContext(ctx, tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(p)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("%s: %w: %s", tool[0], err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// BuildID returns the GNU build-id note of a vmlinux, as the kernel shows it
// in /sys/kernel/notes, in lowercase hex.
func BuildID(vmlinux []byte) (string, error) {
	f, err := safeelf.NewBytes("vmlinux", vmlinux)
	if err != nil {
		return "", err
	}
	var id string
	err = f.Do(func() error {
		for _, s := range f.Sections {
			if s.Type != elf.SHT_NOTE {
				continue
			}
			d, err := s.Data()
			if err != nil {
				continue
			}
			for len(d) >= 12 {
				nsz, dsz, typ := binary.LittleEndian.Uint32(d), binary.LittleEndian.Uint32(d[4:]), binary.LittleEndian.Uint32(d[8:])
				name := 12 + (int(nsz)+3)&^3
				end := name + (int(dsz)+3)&^3
				if name > len(d) || end > len(d) || 12+int(nsz) > len(d) || name+int(dsz) > len(d) {
					break
				}
				if typ == 3 && string(bytes.TrimRight(d[12:12+nsz], "\x00")) == "GNU" { // NT_GNU_BUILD_ID
					id = hex.EncodeToString(d[name : name+int(dsz)])
					return nil
				}
				d = d[end:]
			}
		}
		return errors.New("no GNU build-id note in vmlinux")
	})
	return id, err
}

// Symvers is a kernel's Module.symvers: exported symbol -> the object
// exporting it ("vmlinux" or a module name).
type Symvers map[string]string

// ReadSymvers parses Module.symvers (CRC, symbol, module path, export
// type, namespace; tab-separated).
func ReadSymvers(path string) (Symvers, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSymvers(f)
}

func parseSymvers(r io.Reader) (Symvers, error) {
	s := Symvers{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 3 {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			return nil, fmt.Errorf("Module.symvers line %d: want tab-separated CRC, symbol and module", n)
		}
		owner := fields[2]
		if owner != "vmlinux" {
			owner = strings.ReplaceAll(filepath.Base(owner), "-", "_")
		}
		s[fields[1]] = owner
	}
	return s, sc.Err()
}

// Exported is the lookup elfdiff.Options wants.
func (s Symvers) Exported(name string) (string, bool) {
	o, ok := s[name]
	return o, ok
}

// kallsymsCache stores a parsed symbol table as "type address name" lines.
func writeSymtab(path string, t *elfdiff.Symtab) error {
	var b bytes.Buffer
	for _, s := range t.Syms {
		fmt.Fprintf(&b, "%c %x %s\n", s.Type, s.Addr, s.Name)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return replaceFile(path, b.Bytes())
}

func readSymtab(path, object string) (*elfdiff.Symtab, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := &elfdiff.Symtab{Object: object}
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 || len(f[0]) != 1 {
			return nil, fmt.Errorf("%s: bad line %q", path, line)
		}
		a, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad address in %q", path, line)
		}
		t.Syms = append(t.Syms, elfdiff.KSym{Type: f[0][0], Addr: a, Name: f[2]})
	}
	return t, nil
}

// KernelSymbols returns vmlinux's kallsyms and build-id for a kernel image,
// cached in dir.
func KernelSymbols(ctx context.Context, vmlinuz, dir string) (*elfdiff.Symtab, string, error) {
	symPath, idPath := filepath.Join(dir, "kallsyms"), filepath.Join(dir, "build-id")
	if t, err := readSymtab(symPath, "vmlinux"); err == nil {
		if id, err := os.ReadFile(idPath); err == nil {
			return t, strings.TrimSpace(string(id)), nil
		}
	}
	vml, err := Vmlinux(ctx, vmlinuz, filepath.Join(dir, "vmlinux"))
	if err != nil {
		return nil, "", err
	}
	t, err := elfdiff.ParseKallsyms(vml)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", vmlinuz, err)
	}
	id, err := BuildID(vml)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", vmlinuz, err)
	}
	if err := writeSymtab(symPath, t); err != nil {
		return nil, "", err
	}
	if err := replaceFile(idPath, []byte(id+"\n")); err != nil {
		return nil, "", err
	}
	return t, id, nil
}

// ModuleSymbols reads the symbol table of module name (KBUILD_MODFILE
// modfile) from the kernel's modules folder.
func ModuleSymbols(modulesDir, name, modfile string) (*elfdiff.Symtab, string, error) {
	var candidates []string
	if modfile != "" {
		candidates = append(candidates, filepath.Join(modulesDir, "kernel", modfile+".ko"))
	}
	var found string
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			found = c
			break
		}
	}
	if found == "" {
		// Search by name: modules may be installed under other folders.
		_ = filepath.WalkDir(modulesDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_") == name && strings.HasSuffix(d.Name(), ".ko") {
				found = p
				return filepath.SkipAll
			}
			return nil
		})
	}
	if found == "" {
		return nil, "", fmt.Errorf("module %s (%s.ko) not found under %s", name, modfile, modulesDir)
	}
	b, err := os.ReadFile(found)
	if err != nil {
		return nil, "", err
	}
	f, err := elfdiff.Read(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", found, err)
	}
	return elfdiff.ModuleSymtab(name, f), found, nil
}
