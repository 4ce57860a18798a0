package bootldr

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf16"
)

// The systemd-boot loader's EFI variables (systemd's Boot Loader
// Interface), readable through efivarfs.
const (
	loaderGUID       = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
	efivars          = "sys/firmware/efi/efivars"
	varLoaderDefault = "LoaderEntryDefault-" + loaderGUID
	varLoaderOneShot = "LoaderEntryOneShot-" + loaderGUID
)

// countRE matches boot counting in a loader entry file name ("+3-0").
var countRE = regexp.MustCompile(`\+\d+(-\d+)?\.conf$`)

// parseLoaderEntry reads a Boot Loader Specification entry file.
func parseLoaderEntry(name string, data []byte) Entry {
	e := Entry{ID: countRE.ReplaceAllString(name, ".conf")}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		v = strings.TrimSpace(v)
		switch k {
		case "title":
			e.Title = v
		case "version":
			e.Release = v
		case "linux":
			if e.Release == "" {
				e.Release = strings.TrimPrefix(path.Base(v), "vmlinuz-")
			}
		}
	}
	return e
}

// parseEFIString decodes an efivarfs file holding a UTF-16LE string
// after the 4-byte attributes.
func parseEFIString(data []byte) (string, error) {
	if len(data) < 4 || (len(data)-4)%2 != 0 {
		return "", fmt.Errorf("EFI variable of %d bytes: want 4 bytes of attributes and a UTF-16 string", len(data))
	}
	u := make([]uint16, 0, (len(data)-4)/2)
	for i := 4; i+1 < len(data); i += 2 {
		c := uint16(data[i]) | uint16(data[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), nil
}

func (l *Loader) sdEntriesDir() string {
	for _, d := range []string{"boot/loader/entries", "efi/loader/entries", "boot/efi/loader/entries"} {
		if _, err := os.Stat(l.path(d)); err == nil {
			return d
		}
	}
	return "boot/loader/entries"
}

func (l *Loader) sdEntries() ([]Entry, error) {
	dir := l.sdEntriesDir()
	names, err := filepath.Glob(filepath.Join(l.path(dir), "*.conf"))
	if err != nil {
		return nil, err
	}
	var es []Entry
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read loader entry: %w", err)
		}
		if e := parseLoaderEntry(filepath.Base(n), data); e.Release != "" {
			es = append(es, e)
		}
	}
	// systemd-boot sorts newest first by version; close enough for
	// resolving its first entry.
	sort.SliceStable(es, func(i, j int) bool { return es[i].Release > es[j].Release })
	return es, nil
}

func (l *Loader) efiString(name string) (string, error) {
	data, err := os.ReadFile(l.path(filepath.Join(efivars, name)))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return parseEFIString(data)
}

func (l *Loader) sdStatus() (*Status, error) {
	es, err := l.sdEntries()
	if err != nil {
		return nil, err
	}
	st := &Status{Kind: SystemdBoot, Saved: true}
	if st.Default, err = l.efiString(varLoaderDefault); err != nil {
		return nil, fmt.Errorf("read the default loader entry: %w", err)
	}
	if st.Default == "" {
		// loader.conf's "default" applies when no EFI variable is set.
		for _, p := range []string{"boot/loader/loader.conf", "efi/loader/loader.conf", "boot/efi/loader/loader.conf"} {
			if data, err := os.ReadFile(l.path(p)); err == nil {
				for _, line := range strings.Split(string(data), "\n") {
					if v, ok := strings.CutPrefix(strings.TrimSpace(line), "default "); ok {
						st.Default = strings.TrimSpace(v)
					}
				}
				break
			}
		}
	}
	if st.Next, err = l.efiString(varLoaderOneShot); err != nil {
		return nil, fmt.Errorf("read the one-shot loader entry: %w", err)
	}
	st.DefaultRelease = sdRelease(es, st.Default)
	st.NextRelease = sdRelease(es, st.Next)
	return st, nil
}

// sdRelease resolves a loader entry id or glob ("debian-*") to a release.
func sdRelease(es []Entry, id string) string {
	if id == "" {
		return ""
	}
	for _, e := range es {
		if ok, _ := path.Match(id, e.ID); ok || e.ID == id {
			return e.Release
		}
	}
	return ""
}
