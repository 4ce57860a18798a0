package bootldr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/testenv"
	"github.com/stent-dev/stent/pkgmgr"
)

const (
	id56 = "gnulinux-advanced-/dev/vda>gnulinux-6.1.0-56-amd64-advanced-/dev/vda"
	id57 = "gnulinux-advanced-/dev/vda>gnulinux-6.1.0-57-amd64-advanced-/dev/vda"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestParseGrubCfg reads grub.cfg files written by Debian 12's
// grub-mkconfig (update-grub) on this machine, with stock settings and
// with stent's drop-in.
func TestParseGrubCfg(t *testing.T) {
	es, saved := parseGrubCfg(read(t, "grub.cfg"))
	want := []Entry{
		{ID: "gnulinux-simple-/dev/vda", Title: "GNU/Linux", Release: "6.1.0-57-amd64"},
		{ID: id57, Title: "GNU/Linux, with Linux 6.1.0-57-amd64", Release: "6.1.0-57-amd64"},
		{ID: id56, Title: "GNU/Linux, with Linux 6.1.0-56-amd64", Release: "6.1.0-56-amd64"},
	}
	if d := cmp.Diff(want, es); d != "" {
		t.Errorf("parseGrubCfg(grub.cfg) (-want +got):\n%s", d)
	}
	if saved {
		t.Error("stock grub.cfg: saved default reported")
	}
	if _, saved := parseGrubCfg(read(t, "grub-saved.cfg")); !saved {
		t.Error("grub-saved.cfg (GRUB_DEFAULT=saved from stent's drop-in): saved default not seen")
	}
	if e, err := entryFor(es, "6.1.0-57-amd64"); err != nil || e.ID != id57 {
		t.Errorf("entryFor(6.1.0-57-amd64) = %+v, %v, want the submenu entry", e, err)
	}
	if _, err := entryFor(es, "6.1.0-58-amd64"); !errors.Is(err, ErrNoEntry) {
		t.Errorf("entryFor(6.1.0-58-amd64) = %v, want ErrNoEntry", err)
	}
}

// TestParseGrubenv reads environment blocks written by grub-editenv,
// grub-set-default and grub-reboot.
func TestParseGrubenv(t *testing.T) {
	for _, tt := range []struct {
		file string
		want map[string]string
	}{
		{"grubenv-empty", map[string]string{}},
		{"grubenv-saved", map[string]string{"saved_entry": id56}},
		{"grubenv-next", map[string]string{"saved_entry": id56, "next_entry": id57}},
	} {
		got, err := parseGrubenv(read(t, tt.file))
		if err != nil {
			t.Fatalf("parseGrubenv(%s): %v", tt.file, err)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("parseGrubenv(%s) (-want +got):\n%s", tt.file, d)
		}
	}
	if _, err := parseGrubenv(read(t, "grubenv-next")[:1000]); err == nil {
		t.Error("parseGrubenv(truncated): no error")
	}
	if _, err := parseGrubenv([]byte("saved_entry=0\n")); err == nil {
		t.Error("parseGrubenv(no header): no error")
	}
}

func FuzzParseGrubCfg(f *testing.F) {
	f.Add(read(&testing.T{}, "grub.cfg"))
	f.Fuzz(func(t *testing.T, data []byte) { parseGrubCfg(data); parseGrubenv(data) })
}

// grubRoot is a fake root with /boot/grub/grub.cfg and grubenv.
func grubRoot(t *testing.T, cfg, env string) string {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "boot/grub"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), read(t, cfg), 0o644))
	if env != "" {
		must(t, os.WriteFile(filepath.Join(root, "boot/grub/grubenv"), read(t, env), 0o644))
	}
	return root
}

func requireGrubTools(t *testing.T) {
	t.Helper()
	testenv.NeedTools(t, "grub-set-default", "grub-reboot", "grub-editenv") // package grub2-common
}

// TestGrubRealTools runs the real grub-set-default and grub-reboot on a
// boot directory holding a Debian grub.cfg, then reads what they wrote.
func TestGrubRealTools(t *testing.T) {
	requireGrubTools(t)
	ctx := context.Background()
	root := grubRoot(t, "grub-saved.cfg", "grubenv-empty")
	l := &Loader{Kind: Grub, Runner: pkgmgr.ExecRunner{}, Root: root}
	if d, _ := Detect(root); d != Grub {
		t.Errorf("Detect = %q, want grub", d)
	}
	st, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Saved || st.Default != "" {
		t.Errorf("Status with no saved entry = %+v, want not saved", st)
	}
	if err := l.BootOnce(ctx, "6.1.0-57-amd64"); !errors.Is(err, ErrNotSaved) {
		t.Fatalf("BootOnce without a pinned default = %v, want ErrNotSaved", err)
	}
	if err := l.SetDefault(ctx, "6.1.0-56-amd64"); err != nil {
		t.Fatal(err)
	}
	if err := l.BootOnce(ctx, "6.1.0-57-amd64"); err != nil {
		t.Fatal(err)
	}
	st, err = l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := &Status{Kind: Grub, Default: id56, DefaultRelease: "6.1.0-56-amd64", Next: id57, NextRelease: "6.1.0-57-amd64", Saved: true}
	if d := cmp.Diff(want, st); d != "" {
		t.Errorf("Status after SetDefault and BootOnce (-want +got):\n%s", d)
	}
	got, err := exec.Command("grub-editenv", filepath.Join(root, "boot/grub/grubenv"), "list").Output()
	if err != nil || !strings.Contains(string(got), "next_entry="+id57) {
		t.Errorf("grub-editenv list = %q, %v", got, err)
	}
	if err := l.SetDefault(ctx, "6.1.0-99-amd64"); !errors.Is(err, ErrNoEntry) {
		t.Errorf("SetDefault(absent kernel) = %v, want ErrNoEntry", err)
	}
}

// updateGrub stands in for update-grub in a fake root: it writes the
// grub.cfg that Debian's grub-mkconfig wrote with stent's drop-in.
type updateGrub struct {
	t     *testing.T
	root  string
	runs  int
	names []string
}

func (u *updateGrub) Run(ctx context.Context, name string, args, env []string) ([]byte, []byte, error) {
	u.names = append(u.names, name)
	if name != "update-grub" {
		return pkgmgr.ExecRunner{}.Run(ctx, name, args, env)
	}
	u.runs++
	if _, err := os.Stat(filepath.Join(u.root, DropIn)); err != nil {
		u.t.Errorf("update-grub ran before the drop-in was written: %v", err)
	}
	return nil, nil, os.WriteFile(filepath.Join(u.root, "boot/grub/grub.cfg"), read(u.t, "grub-saved.cfg"), 0o644)
}

func TestGrubEnsureConfig(t *testing.T) {
	requireGrubTools(t)
	ctx := context.Background()
	root := grubRoot(t, "grub.cfg", "grubenv-empty")
	u := &updateGrub{t: t, root: root}
	l := &Loader{Kind: Grub, Runner: u, Root: root}
	changed, err := l.EnsureConfig(ctx, 0, "6.1.0-56-amd64")
	if err != nil || !changed || u.runs != 1 {
		t.Fatalf("EnsureConfig = %v, %v (update-grub ran %d times)", changed, err, u.runs)
	}
	st, err := l.Status(ctx)
	if err != nil || !st.Saved || st.DefaultRelease != "6.1.0-56-amd64" {
		t.Errorf("Status after EnsureConfig = %+v, %v, want 6.1.0-56-amd64 pinned", st, err)
	}
	drop, _ := os.ReadFile(filepath.Join(root, DropIn))
	if !strings.Contains(string(drop), "GRUB_DEFAULT=saved") || !strings.Contains(string(drop), "panic=10") {
		t.Errorf("drop-in = %s", drop)
	}
	if changed, err := l.EnsureConfig(ctx, 0, "6.1.0-56-amd64"); err != nil || changed || u.runs != 1 {
		t.Errorf("EnsureConfig again = %v, %v (update-grub ran %d times), want no change", changed, err, u.runs)
	}
}

// TestGrubEnsureConfigSandboxed: where the agent may not write /etc (its
// unit's ProtectSystem=strict), the drop-in is written through the Runner,
// as update-grub is.
func TestGrubEnsureConfigSandboxed(t *testing.T) {
	requireGrubTools(t)
	ctx := context.Background()
	root := grubRoot(t, "grub.cfg", "grubenv-empty")
	old := writeFile
	t.Cleanup(func() { writeFile = old })
	writeFile = func(path string, _ []byte, _ os.FileMode) error {
		return fmt.Errorf("write %s: %w", path, &os.PathError{Op: "open", Path: path, Err: syscall.EROFS})
	}
	u := &updateGrub{t: t, root: root}
	l := &Loader{Kind: Grub, Runner: u, Root: root}
	if _, err := l.EnsureConfig(ctx, 0, "6.1.0-56-amd64"); err != nil {
		t.Fatalf("EnsureConfig with a read-only /etc = %v, want the drop-in written through the runner", err)
	}
	drop, err := os.ReadFile(filepath.Join(root, DropIn))
	if err != nil || !bytes.Equal(drop, grubDropIn(DefaultPanicSeconds)) {
		t.Errorf("drop-in = %q, %v; want %q", drop, err, grubDropIn(DefaultPanicSeconds))
	}
	if _, err := os.Stat(filepath.Join(root, DropIn+".stent-tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	if u.runs != 1 || !slices.Contains(u.names, "sh") {
		t.Errorf("runner ran %v (update-grub %d times), want sh then update-grub", u.names, u.runs)
	}
}

func TestSystemdBoot(t *testing.T) {
	root := t.TempDir()
	ents := filepath.Join(root, "boot/loader/entries")
	must(t, os.MkdirAll(ents, 0o755))
	must(t, os.MkdirAll(filepath.Join(root, efivars), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "boot/loader/loader.conf"), []byte("timeout 3\n"), 0o644))
	for _, r := range []string{"6.1.0-56-amd64", "6.1.0-57-amd64"} {
		must(t, os.WriteFile(filepath.Join(ents, "abc-"+r+".conf"), []byte("title Debian\nversion "+r+"\nlinux /abc/"+r+"/linux\n"), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(ents, "abc-6.1.0-58-amd64+2-1.conf"), []byte("title Debian\nlinux /vmlinuz-6.1.0-58-amd64\n"), 0o644))
	efi := func(s string) []byte {
		b := []byte{7, 0, 0, 0}
		for _, c := range s + "\x00" {
			b = append(b, byte(c), 0)
		}
		return b
	}
	must(t, os.WriteFile(filepath.Join(root, efivars, varLoaderDefault), efi("abc-6.1.0-56-amd64.conf"), 0o644))
	f := &recorded{t: t, want: []string{"bootctl set-oneshot abc-6.1.0-58-amd64.conf"}}
	f.after = func() {
		must(t, os.WriteFile(filepath.Join(root, efivars, varLoaderOneShot), efi("abc-6.1.0-58-amd64.conf"), 0o644))
	}
	if k, err := Detect(root); k != SystemdBoot {
		t.Fatalf("Detect = %q, %v", k, err)
	}
	l := &Loader{Kind: SystemdBoot, Runner: f, Root: root}
	if err := l.BootOnce(context.Background(), "6.1.0-58-amd64"); err != nil {
		t.Fatal(err)
	}
	st, err := l.Status(context.Background())
	want := &Status{Kind: SystemdBoot, Default: "abc-6.1.0-56-amd64.conf", DefaultRelease: "6.1.0-56-amd64", Next: "abc-6.1.0-58-amd64.conf", NextRelease: "6.1.0-58-amd64", Saved: true}
	if d := cmp.Diff(want, st); err != nil || d != "" {
		t.Errorf("Status (-want +got):\n%s %v", d, err)
	}
}

// recorded checks a command sequence and runs after() after each.
type recorded struct {
	t     *testing.T
	want  []string
	out   []string
	n     int
	after func()
}

func (r *recorded) Run(_ context.Context, name string, args, _ []string) ([]byte, []byte, error) {
	got := strings.TrimSpace(name + " " + strings.Join(args, " "))
	if r.n >= len(r.want) || r.want[r.n] != got {
		r.t.Fatalf("command %d = %q, want %v", r.n, got, r.want)
	}
	out := ""
	if r.n < len(r.out) {
		out = r.out[r.n]
	}
	r.n++
	if r.after != nil {
		r.after()
	}
	return []byte(out), nil, nil
}

// grubbyInfo is grubby --info=ALL as RHEL 9 prints it (recorded from its
// documented format; no RHEL machine runs here).
const grubbyInfo = `index=0
kernel="/boot/vmlinuz-5.14.0-362.13.1.el9_3.x86_64"
args="ro crashkernel=1G-4G:192M rhgb quiet"
root="/dev/mapper/rl-root"
initrd="/boot/initramfs-5.14.0-362.13.1.el9_3.x86_64.img"
title="Rocky Linux (5.14.0-362.13.1.el9_3.x86_64) 9.3 (Blue Onyx)"
id="0a1b2c-5.14.0-362.13.1.el9_3.x86_64"
index=1
kernel="/boot/vmlinuz-5.14.0-362.8.1.el9_3.x86_64"
args="ro crashkernel=1G-4G:192M rhgb quiet"
root="/dev/mapper/rl-root"
initrd="/boot/initramfs-5.14.0-362.8.1.el9_3.x86_64.img"
title="Rocky Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Blue Onyx)"
id="0a1b2c-5.14.0-362.8.1.el9_3.x86_64"
index=2
kernel="/boot/vmlinuz-0-rescue-0a1b2c"
title="Rocky Linux (0-rescue-0a1b2c) 9.3 (Blue Onyx)"
id="0a1b2c-0-rescue"
`

func TestGrubby(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "boot/grub2"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "boot/grub2/grubenv"), read(t, "grubenv-empty"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "usr/sbin/grubby"), nil, 0o755))
	if k, err := Detect(root); k != Grubby {
		t.Fatalf("Detect = %q, %v", k, err)
	}
	f := &recorded{t: t,
		want: []string{"grubby --info=ALL", "grubby --set-default=/boot/vmlinuz-5.14.0-362.13.1.el9_3.x86_64", "grubby --info=ALL", "grubby --default-kernel"},
		out:  []string{grubbyInfo, "", grubbyInfo, "/boot/vmlinuz-5.14.0-362.13.1.el9_3.x86_64\n"},
	}
	l := &Loader{Kind: Grubby, Runner: f, Root: root}
	if err := l.SetDefault(context.Background(), "5.14.0-362.13.1.el9_3.x86_64"); err != nil {
		t.Fatal(err)
	}
	if es := parseGrubbyInfo([]byte(grubbyInfo)); len(es) != 2 || es[1].ID != "0a1b2c-5.14.0-362.8.1.el9_3.x86_64" {
		t.Errorf("parseGrubbyInfo = %+v", es)
	}
}
