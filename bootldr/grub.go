package bootldr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/stent-dev/stent/internal/atomicfile"
)

// grubMenuRE matches a menuentry or submenu line: its title and its id
// (after $menuentry_id_option or --id).
var grubMenuRE = regexp.MustCompile(`^(menuentry|submenu)\s+'([^']*)'.*?(?:\$menuentry_id_option|--id)\s+'([^']*)'`)

// parseGrubCfg returns the kernel entries of a grub.cfg as written by
// grub-mkconfig: ids are the submenu path GRUB takes
// ("gnulinux-advanced-UUID>gnulinux-6.1.0-57-amd64-advanced-UUID"),
// recovery entries are left out. savedDefault reports whether the file
// boots the saved entry (GRUB_DEFAULT=saved).
func parseGrubCfg(data []byte) (entries []Entry, savedDefault bool) {
	type frame struct {
		id      string
		isEntry bool
	}
	var stack []frame
	var cur *Entry
	recovery := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.Contains(line, `set default="${saved_entry}"`) {
			savedDefault = true
		}
		if m := grubMenuRE.FindStringSubmatch(line); m != nil {
			var ids []string
			for _, f := range stack {
				ids = append(ids, f.id)
			}
			ids = append(ids, m[3])
			if m[1] == "menuentry" {
				cur = &Entry{ID: strings.Join(ids, ">"), Title: m[2]}
				recovery = strings.Contains(m[2], "recovery mode") || strings.Contains(m[3], "-recovery-")
			}
			stack = append(stack, frame{m[3], m[1] == "menuentry"})
			continue
		}
		if cur != nil {
			f := strings.Fields(line)
			if len(f) >= 2 && (f[0] == "linux" || f[0] == "linuxefi" || f[0] == "linux16") {
				cur.Release = strings.TrimPrefix(path.Base(f[1]), "vmlinuz-")
			}
		}
		if line == "}" && len(stack) > 0 {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if top.isEntry && cur != nil {
				if cur.Release != "" && !recovery {
					entries = append(entries, *cur)
				}
				cur = nil
			}
		}
	}
	return entries, savedDefault
}

// grubenvHeader starts every GRUB environment block.
const grubenvHeader = "# GRUB Environment Block\n"

// parseGrubenv parses a GRUB environment block (a 1024-byte file of
// name=value lines padded with '#').
func parseGrubenv(data []byte) (map[string]string, error) {
	if !bytes.HasPrefix(data, []byte(grubenvHeader)) {
		return nil, fmt.Errorf("not a GRUB environment block (no %q header)", strings.TrimSpace(grubenvHeader))
	}
	if len(data) != 1024 {
		return nil, fmt.Errorf("GRUB environment block is %d bytes, want 1024 (rewrite it with grub-editenv create)", len(data))
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(data[len(grubenvHeader):]), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("GRUB environment block: line %q is not name=value", line)
		}
		env[k] = v
	}
	return env, nil
}

func (l *Loader) grubCfg() ([]Entry, bool, error) {
	data, err := os.ReadFile(l.path("boot/grub/grub.cfg"))
	if err != nil {
		return nil, false, fmt.Errorf("read GRUB menu: %w", err)
	}
	es, saved := parseGrubCfg(data)
	return es, saved, nil
}

func (l *Loader) grubEntries() ([]Entry, error) {
	es, _, err := l.grubCfg()
	return es, err
}

// grubenv reads /boot/grub/grubenv; a missing one is empty.
func (l *Loader) grubenv(p string) (map[string]string, error) {
	data, err := os.ReadFile(l.path(p))
	if os.IsNotExist(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	env, err := parseGrubenv(data)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", p, err)
	}
	return env, nil
}

func (l *Loader) grubStatus() (*Status, error) {
	es, saved, err := l.grubCfg()
	if err != nil {
		return nil, err
	}
	env, err := l.grubenv("boot/grub/grubenv")
	if err != nil {
		return nil, err
	}
	st := &Status{Kind: Grub, Next: env["next_entry"]}
	if saved {
		st.Default = env["saved_entry"]
		st.Saved = st.Default != ""
	} else {
		st.Default = "0"
	}
	st.DefaultRelease = releaseOf(es, st.Default)
	if st.Next != "" {
		st.NextRelease = releaseOf(es, st.Next)
	}
	return st, nil
}

// grubArgs are grub-set-default's and grub-reboot's arguments for id.
func (l *Loader) grubArgs(id string) []string {
	if l.root() != "/" {
		return []string{"--boot-directory=" + l.path("boot"), id}
	}
	return []string{id}
}

// DropIn is the GRUB configuration drop-in EnsureConfig writes.
const DropIn = "etc/default/grub.d/stent.cfg"

// DefaultPanicSeconds is the kernel's panic= that EnsureConfig sets: a
// kernel that panics reboots after so many seconds, into the default.
const DefaultPanicSeconds = 10

// grubDropIn is the drop-in's content.
func grubDropIn(panicSeconds int) []byte {
	return []byte(`# Written by stent (stent kernel upgrade). Stent boots a new kernel once
# (grub-reboot) and makes it the default (grub-set-default) only after it
# booted healthy, so GRUB must boot its saved entry and never save the entry
# it booted. A kernel that panics reboots after panic= seconds, into the
# saved default.
GRUB_DEFAULT=saved
GRUB_SAVEDEFAULT=false
GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX panic=` + strconv.Itoa(panicSeconds) + `"
`)
}

// writeFile writes a file atomically; a variable for tests.
var writeFile = atomicfile.Write

// writeConfig writes a configuration file (rel, under Root) atomically.
// When this process may not write there, as the fleet agent, whose unit is
// sandboxed with ProtectSystem=strict (/etc read-only), the write goes
// through the Runner like update-grub does, which under systemd runs it in
// a transient unit outside the sandbox.
func (l *Loader) writeConfig(ctx context.Context, rel string, data []byte) error {
	p := l.path(rel)
	err := writeFile(p, data, 0o644)
	if err == nil || !errors.Is(err, syscall.EROFS) && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	const script = `set -e; umask 022; mkdir -p "$(dirname "$1")"; printf '%s' "$2" >"$1.stent-tmp"; mv -f "$1.stent-tmp" "$1"`
	if _, _, rerr := l.Runner.Run(ctx, "sh", []string{"-c", script, "sh", p, string(data)}, []string{"LC_ALL=C"}); rerr != nil {
		return fmt.Errorf("%w; writing it through %T failed too: %v", err, l.Runner, rerr)
	}
	return nil
}

// EnsureConfig makes the boot loader fit for one-shot boots with
// fallback: on GRUB it writes the DropIn (GRUB_DEFAULT=saved, a panic=
// timeout), runs update-grub when that changed it, and pins pin (the
// running or known-good release) as the saved default when none is set.
// On grubby it adds panic= to every kernel's arguments; systemd-boot needs
// nothing (its default is an explicit EFI variable). It reports whether
// anything changed.
func (l *Loader) EnsureConfig(ctx context.Context, panicSeconds int, pin string) (bool, error) {
	if panicSeconds <= 0 {
		panicSeconds = DefaultPanicSeconds
	}
	switch l.Kind {
	case SystemdBoot:
		return false, nil
	case Grubby:
		if _, err := l.run(ctx, "grubby", "--update-kernel=ALL", "--args=panic="+strconv.Itoa(panicSeconds)); err != nil {
			return false, fmt.Errorf("ensure boot config: %w", err)
		}
		return true, nil
	case Grub:
	default:
		return false, fmt.Errorf("%q: %w", l.Kind, ErrNotSupported)
	}
	changed := false
	want := grubDropIn(panicSeconds)
	if have, err := os.ReadFile(l.path(DropIn)); err != nil || !bytes.Equal(have, want) {
		if err := l.writeConfig(ctx, DropIn, want); err != nil {
			return false, fmt.Errorf("ensure boot config: %w", err)
		}
		changed = true
	}
	if _, saved, err := l.grubCfg(); err != nil {
		return changed, fmt.Errorf("ensure boot config: %w", err)
	} else if changed || !saved {
		if _, err := l.run(ctx, "update-grub"); err != nil {
			return changed, fmt.Errorf("ensure boot config: %w", err)
		}
		changed = true
		if _, saved, err = l.grubCfg(); err != nil {
			return changed, fmt.Errorf("ensure boot config: %w", err)
		} else if !saved {
			return changed, fmt.Errorf("ensure boot config: update-grub ran but /boot/grub/grub.cfg does not boot the saved entry: is GRUB_DEFAULT set after /etc/default/grub.d is read, in /etc/default/grub?: %w", ErrNotSaved)
		}
	}
	st, err := l.grubStatus()
	if err != nil {
		return changed, fmt.Errorf("ensure boot config: %w", err)
	}
	if st.Default == "" || st.DefaultRelease == "" {
		if pin == "" {
			return changed, fmt.Errorf("ensure boot config: no saved default entry and no kernel to pin: %w", ErrNotSaved)
		}
		// With GRUB_DEFAULT=saved and no saved entry GRUB boots entry 0,
		// the newest kernel: pin the known-good one.
		if err := l.SetDefault(ctx, pin); err != nil {
			return changed, fmt.Errorf("ensure boot config: %w", err)
		}
		changed = true
	}
	return changed, nil
}
