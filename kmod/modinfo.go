// Package kmod reads kernel module files and loads and unloads modules.
// Parsing (ModInfo) is pure; the syscalls live in sys.go.
package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/stent-dev/stent/internal/safeelf"
)

// ErrNotModule means the bytes are not a loadable kernel module.
var ErrNotModule = errors.New("not a kernel module")

// sigMagic ends a module that carries an appended signature
// (scripts/sign-file, struct module_signature before it).
const sigMagic = "~Module signature appended~\n"

// Info is what a module file says about itself in its .modinfo section.
type Info struct {
	Name      string   `json:"name"`
	Vermagic  string   `json:"vermagic"`
	Livepatch bool     `json:"livepatch"`
	License   string   `json:"license,omitempty"`
	Depends   []string `json:"depends,omitempty"`
	Signed    bool     `json:"signed"` // carries an appended kernel module signature
	// ThisModule is the name in .gnu.linkonce.this_module (struct
	// module.name), the name the kernel actually registers; "" when the
	// file has no such section or its layout is unknown.
	ThisModule string              `json:"this_module,omitempty"`
	Fields     map[string][]string `json:"-"`
}

// Release returns the kernel release named by the vermagic string
// ("6.1.0-56-amd64 SMP preempt mod_unload modversions " -> "6.1.0-56-amd64").
func (i *Info) Release() string {
	f := strings.Fields(i.Vermagic)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// ModInfo parses a module file's bytes. It never panics: debug/elf is not
// hardened against hostile input, so it is read through safeelf, which
// reports its panics as errors.
func ModInfo(data []byte) (*Info, error) {
	signed := false
	body := data
	if bytes.HasSuffix(data, []byte(sigMagic)) {
		signed = true
		body = stripSignature(data)
	}
	f, err := safeelf.NewBytes("", body)
	if err != nil {
		if fe, ok := errors.AsType[*safeelf.FormatError](err); ok && !isPanic(err) {
			err = fe.Err // debug/elf's own error says what it found
		}
		return nil, fmt.Errorf("%w: not an ELF file: %w", ErrNotModule, err)
	}
	var info *Info
	err = f.Do(func() (err error) {
		info, err = modInfo(f.File, body, signed)
		return err
	})
	if isPanic(err) {
		return nil, fmt.Errorf("%w: %w", ErrNotModule, err)
	}
	return info, err
}

func isPanic(err error) bool {
	_, ok := errors.AsType[*safeelf.PanicError](err)
	return ok
}

func modInfo(f *elf.File, body []byte, signed bool) (*Info, error) {
	if f.Type != elf.ET_REL {
		return nil, fmt.Errorf("%w: ELF type is %v, want a relocatable kernel module (ET_REL)", ErrNotModule, f.Type)
	}
	sec := f.Section(".modinfo")
	if sec == nil || sec.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("%w: no .modinfo section: is it a kernel module built by kbuild?", ErrNotModule)
	}
	if sec.Size > uint64(len(body)) {
		return nil, fmt.Errorf("%w: .modinfo size %d beyond file end", ErrNotModule, sec.Size)
	}
	raw, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%w: read .modinfo at offset %d: %v", ErrNotModule, sec.Offset, err)
	}
	info := parseModinfo(raw)
	info.Signed = signed
	info.ThisModule = thisModuleName(f)
	// Every module built by kbuild records exactly one name= (modpost).
	switch names := info.Fields["name"]; {
	case len(names) == 0:
		return nil, fmt.Errorf("%w: .modinfo has no name= entry: is it a kernel module built by kbuild?", ErrNotModule)
	case len(names) > 1:
		return nil, fmt.Errorf("%w: .modinfo has more than one name= entry", ErrNotModule)
	case names[0] == "":
		return nil, fmt.Errorf("%w: .modinfo has an empty name= entry", ErrNotModule)
	}
	return info, nil
}

func parseModinfo(raw []byte) *Info {
	info := &Info{Fields: map[string][]string{}}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		info.Fields[k] = append(info.Fields[k], v)
		switch k {
		case "name":
			info.Name = v
		case "vermagic":
			info.Vermagic = v
		case "livepatch":
			info.Livepatch = v == "Y"
		case "license":
			info.License = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					info.Depends = append(info.Depends, d)
				}
			}
		}
	}
	return info
}

// stripSignature removes an appended module signature: the layout is
// module || signature || struct module_signature (12 bytes, sig_len
// big-endian in the last 4) || magic.
func stripSignature(data []byte) []byte {
	end := len(data) - len(sigMagic)
	if end < 12 {
		return data
	}
	sigLen := int(binary.BigEndian.Uint32(data[end-4 : end]))
	start := end - 12 - sigLen
	if sigLen < 0 || start < 0 {
		return data
	}
	return data[:start]
}

// thisModuleName reads struct module's name from .gnu.linkonce.this_module.
// Since 2.6 struct module starts with enum module_state state, then struct
// list_head list, then char name[MODULE_NAME_LEN]: on 64-bit kernels name
// is at offset 24, on 32-bit at 12.
func thisModuleName(f *elf.File) string {
	sec := f.Section(".gnu.linkonce.this_module")
	if sec == nil || sec.Type == elf.SHT_NOBITS {
		return ""
	}
	off := 12
	if f.Class == elf.ELFCLASS64 {
		off = 24
	}
	data, err := sec.Data()
	if err != nil || len(data) < off+moduleNameLen {
		return ""
	}
	name := data[off : off+moduleNameLen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name)
}

// moduleNameLen is MODULE_NAME_LEN on 64-bit kernels (64 - sizeof(long)).
const moduleNameLen = 56
