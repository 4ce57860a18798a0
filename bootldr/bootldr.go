// Package bootldr reads and sets the boot loader's default and one-shot
// entries: GRUB on Debian and Ubuntu (grub-set-default, grub-reboot,
// grubenv), systemd-boot (bootctl set-default, set-oneshot) and grubby on
// the RHEL family (grubby --set-default, grub2-reboot).
//
// The first boot into a new kernel is a one-shot boot (BootOnce): if it
// panics or hangs, the next boot returns to the default, which only
// SetDefault moves, after the new kernel booted healthy. Parsing
// (grub.cfg, grubenv, loader entries, grubby --info) is pure and tested on
// files written by the real tools; commands go through a pkgmgr.Runner.
package bootldr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stent-dev/stent/pkgmgr"
)

// Kind names a boot loader.
type Kind string

// The boot loaders bootldr drives.
const (
	Grub        Kind = "grub"         // Debian/Ubuntu GRUB: /boot/grub/grub.cfg and grubenv
	SystemdBoot Kind = "systemd-boot" // loader entries, EFI variables, bootctl
	Grubby      Kind = "grubby"       // RHEL family: GRUB with BLS entries, grubby, grub2-reboot
)

// Errors callers branch on.
var (
	ErrNotSupported = errors.New("boot loader not supported")
	ErrNoEntry      = errors.New("no boot entry for this kernel")
	// ErrNotSaved: GRUB does not boot its saved entry (GRUB_DEFAULT is
	// not "saved", or no entry is pinned), so a one-shot boot would not
	// come back to the known-good kernel. EnsureConfig fixes it.
	ErrNotSaved = errors.New("boot loader default is not a pinned saved entry")
)

// Entry is one boot entry.
type Entry struct {
	ID      string `json:"id"` // what the loader's tools take: GRUB's menu path, a loader entry file, a BLS id
	Title   string `json:"title"`
	Release string `json:"release"` // the kernel release it boots
}

// Status is the boot loader's current choice.
type Status struct {
	Kind           Kind   `json:"kind"`
	Default        string `json:"default"`         // entry id (empty: the loader's first entry)
	DefaultRelease string `json:"default_release"` // empty when not resolved to a kernel
	Next           string `json:"next,omitempty"`  // the one-shot entry for the next boot
	NextRelease    string `json:"next_release,omitempty"`
	// Saved: the loader boots a pinned default (GRUB: GRUB_DEFAULT=saved
	// in grub.cfg and a saved_entry set). Always true for systemd-boot
	// and grubby, whose default is explicit.
	Saved bool `json:"saved"`
}

// Loader drives one host's boot loader.
type Loader struct {
	Kind   Kind
	Runner pkgmgr.Runner
	// Root is the filesystem root ("/" on a real host). Off "/", GRUB's
	// tools get --boot-directory=Root/boot.
	Root string
}

// Detect says which boot loader the system under root uses.
func Detect(root string) (Kind, error) {
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(root, p)); return err == nil }
	switch {
	case exists("boot/grub2/grub.cfg") || exists("boot/grub2/grubenv") || exists("etc/grub2.cfg"):
		if exists("usr/sbin/grubby") || exists("sbin/grubby") || exists("usr/bin/grubby") {
			return Grubby, nil
		}
		return "", fmt.Errorf("GRUB 2 with /boot/grub2 but no grubby: %w", ErrNotSupported)
	case exists("boot/grub/grub.cfg"):
		return Grub, nil
	case exists("boot/loader/loader.conf") || exists("efi/loader/loader.conf") || exists("boot/efi/loader/loader.conf"):
		return SystemdBoot, nil
	}
	return "", fmt.Errorf("no /boot/grub/grub.cfg, /boot/grub2 or loader/loader.conf under %s: %w", root, ErrNotSupported)
}

// New returns the Loader of the system under root, running commands
// with pkgmgr.ExecRunner.
func New(root string) (*Loader, error) {
	k, err := Detect(root)
	if err != nil {
		return nil, err
	}
	return &Loader{Kind: k, Runner: pkgmgr.ExecRunner{}, Root: root}, nil
}

func (l *Loader) root() string {
	if l.Root == "" {
		return "/"
	}
	return l.Root
}

func (l *Loader) path(p string) string { return filepath.Join(l.root(), p) }

func (l *Loader) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, errOut, err := l.Runner.Run(ctx, name, args, []string{"LC_ALL=C"})
	if err != nil {
		msg := strings.TrimSpace(string(errOut))
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// Entries lists the boot entries that boot a kernel (no recovery ones).
func (l *Loader) Entries(ctx context.Context) ([]Entry, error) {
	switch l.Kind {
	case Grub:
		return l.grubEntries()
	case SystemdBoot:
		return l.sdEntries()
	case Grubby:
		return l.grubbyEntries(ctx)
	}
	return nil, fmt.Errorf("%q: %w", l.Kind, ErrNotSupported)
}

// EntryFor returns the entry that boots release.
func (l *Loader) EntryFor(ctx context.Context, release string) (Entry, error) {
	es, err := l.Entries(ctx)
	if err != nil {
		return Entry{}, err
	}
	return entryFor(es, release)
}

func entryFor(es []Entry, release string) (Entry, error) {
	var top *Entry
	for i, e := range es {
		if e.Release != release {
			continue
		}
		// GRUB: prefer the entry in Debian's "Advanced options" submenu,
		// whose id names the release; the top entry follows the newest.
		if strings.Contains(e.ID, ">") || top != nil {
			return e, nil
		}
		top = &es[i]
	}
	if top != nil {
		return *top, nil
	}
	return Entry{}, fmt.Errorf("kernel %s: %w (is it installed, and was the boot loader's configuration updated?)", release, ErrNoEntry)
}

// releaseOf resolves an entry id (or GRUB's "0") to its release.
func releaseOf(es []Entry, id string) string {
	if id == "" || id == "0" {
		if len(es) > 0 {
			return es[0].Release
		}
		return ""
	}
	for _, e := range es {
		if e.ID == id || e.Title == id {
			return e.Release
		}
	}
	return ""
}

// Status reads the default and one-shot entries.
func (l *Loader) Status(ctx context.Context) (*Status, error) {
	switch l.Kind {
	case Grub:
		return l.grubStatus()
	case SystemdBoot:
		return l.sdStatus()
	case Grubby:
		return l.grubbyStatus(ctx)
	}
	return nil, fmt.Errorf("%q: %w", l.Kind, ErrNotSupported)
}

// SetDefault makes release the kernel booted from now on, and checks it
// took.
func (l *Loader) SetDefault(ctx context.Context, release string) error {
	e, err := l.EntryFor(ctx, release)
	if err != nil {
		return fmt.Errorf("set default: %w", err)
	}
	switch l.Kind {
	case Grub:
		_, err = l.run(ctx, "grub-set-default", l.grubArgs(e.ID)...)
	case SystemdBoot:
		_, err = l.run(ctx, "bootctl", "set-default", e.ID)
	case Grubby:
		_, err = l.run(ctx, "grubby", "--set-default=/boot/vmlinuz-"+release)
	}
	if err != nil {
		return fmt.Errorf("set default %s: %w", release, err)
	}
	st, err := l.Status(ctx)
	if err != nil {
		return fmt.Errorf("set default %s: read back: %w", release, err)
	}
	if st.DefaultRelease != release {
		return fmt.Errorf("set default %s: the boot loader's default is still %q (%s)", release, st.Default, st.DefaultRelease)
	}
	return nil
}

// BootOnce makes the next boot, and only the next one, boot release. It
// refuses when the boot after would not come back to a pinned default
// (ErrNotSaved): run EnsureConfig first.
func (l *Loader) BootOnce(ctx context.Context, release string) error {
	st, err := l.Status(ctx)
	if err != nil {
		return fmt.Errorf("boot once: %w", err)
	}
	if !st.Saved {
		return fmt.Errorf("boot once %s: %w: a failed boot would not fall back; run stent kernel upgrade (EnsureConfig) or pin the default first", release, ErrNotSaved)
	}
	e, err := l.EntryFor(ctx, release)
	if err != nil {
		return fmt.Errorf("boot once: %w", err)
	}
	switch l.Kind {
	case Grub:
		_, err = l.run(ctx, "grub-reboot", l.grubArgs(e.ID)...)
	case SystemdBoot:
		_, err = l.run(ctx, "bootctl", "set-oneshot", e.ID)
	case Grubby:
		_, err = l.run(ctx, "grub2-reboot", e.ID)
	}
	if err != nil {
		return fmt.Errorf("boot once %s: %w", release, err)
	}
	if st, err = l.Status(ctx); err != nil {
		return fmt.Errorf("boot once %s: read back: %w", release, err)
	}
	if st.NextRelease != release {
		return fmt.Errorf("boot once %s: the next boot entry is %q, not the one for %s", release, st.Next, release)
	}
	return nil
}
