package patcher

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fakesys"
	"github.com/stent-dev/stent/internal/testenv"
	"github.com/stent-dev/stent/klp"
	"github.com/stent-dev/stent/kmod"
)

// fakeKernel plays the kernel's part on a fake sysfs tree: Load registers
// a patch, a background loop finishes transitions and frees disabled or
// replaced patches, Unload removes modules.
type fakeKernel struct {
	tr       *fakesys.Tree
	mu       sync.Mutex
	modules  map[string]bool
	stall    map[string]bool // patches whose patching transition never ends
	loads    int
	failLoad error
	stop     chan struct{}
}

func newFakeKernel(t *testing.T) *fakeKernel {
	k := &fakeKernel{tr: fakesys.NewTree(t, fakesys.V61), modules: map[string]bool{}, stall: map[string]bool{}, stop: make(chan struct{})}
	go k.loop()
	t.Cleanup(func() { close(k.stop) })
	return k
}

func (k *fakeKernel) Load(name string, data []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failLoad != nil {
		return k.failLoad
	}
	info, err := kmod.ModInfo(data)
	if err != nil {
		return err
	}
	if k.modules[info.Name] {
		return errors.New("EEXIST")
	}
	k.loads++
	k.modules[info.Name] = true
	k.tr.AddPatch(info.Name, true, true, false, 0, fakesys.Func{Object: "vmlinux", Name: "cmdline_proc_show"})
	k.syncModules()
	return nil
}

func (k *fakeKernel) Unload(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.modules[name] {
		return fmt.Errorf("unload %s: %w", name, kmod.ErrNotLoaded)
	}
	if _, err := os.Stat(filepath.Join(k.tr.Root, "sys/kernel/livepatch", name)); err == nil {
		return errors.New("EBUSY: still in use")
	}
	delete(k.modules, name)
	k.syncModules()
	return nil
}

func (k *fakeKernel) syncModules() {
	mods := map[string]string{}
	for n := range k.modules {
		mods[n] = "OEK"
		if n == "ext4" {
			mods[n] = "" // an ordinary in-tree module
		}
	}
	k.tr.SetModules(mods)
}

// loop finishes transitions: enabled+transition -> done (and replaced
// patches freed); disabled -> freed.
func (k *fakeKernel) loop() {
	for {
		select {
		case <-k.stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		k.mu.Lock()
		ents, _ := os.ReadDir(filepath.Join(k.tr.Root, "sys/kernel/livepatch"))
		for _, e := range ents {
			base := "sys/kernel/livepatch/" + e.Name() + "/"
			en, tr := k.tr.Read(base+"enabled"), k.tr.Read(base+"transition")
			if en == "0" {
				k.tr.RemovePatch(e.Name())
				continue
			}
			if tr == "1" && !k.stall[e.Name()] {
				// Like the kernel: replaced patches are disabled when the
				// transition completes and freed later, asynchronously.
				if strings.Contains(e.Name(), "cumul") {
					for _, o := range ents {
						if o.Name() != e.Name() {
							k.tr.Write("sys/kernel/livepatch/"+o.Name()+"/enabled", "0")
						}
					}
				}
				k.tr.Write(base+"transition", "0")
			}
		}
		k.mu.Unlock()
	}
}

// fixture builds fake modules and signed bundles.
type fixture struct {
	t       *testing.T
	dir     string
	keysDir string
	key     ed25519.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	testenv.NeedTools(t, "gcc") // builds the module fixtures
	f := &fixture{t: t, dir: t.TempDir(), keysDir: t.TempDir()}
	kf, err := bundle.GenerateKey(f.dir, "test", false)
	if err != nil {
		t.Fatal(err)
	}
	if f.key, err = bundle.LoadPrivateKey(kf.Private); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(kf.Public)
	os.WriteFile(filepath.Join(f.keysDir, "test.pub"), pub, 0o644)
	return f
}

func (f *fixture) ko(name, release string, livepatch bool) string {
	lp := "livepatch=Y"
	if !livepatch {
		lp = "intree=Y"
	}
	out := filepath.Join(f.dir, name+"-"+release+".ko")
	cmd := exec.Command("gcc", "-c", "-o", out, "testdata/fakelp.c", "-DNAME="+name, `-DRELEASE="`+release+`"`, `-DLP="`+lp+`"`)
	if b, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("gcc: %v\n%s", err, b)
	}
	return out
}

func (f *fixture) bundle(name string, level int64, replace bool, mutate func(*bundle.Manifest)) string {
	ko, err := os.ReadFile(f.ko(name, "6.1.0-56-amd64", true))
	if err != nil {
		f.t.Fatal(err)
	}
	m := &bundle.Manifest{FormatVersion: bundle.FormatVersion, Name: name, Level: level, Replace: replace,
		Kernel:      bundle.Kernel{Release: "6.1.0-56-amd64", PackageVersion: "6.1.192-2"},
		CVEs:        []string{"CVE-2026-0001"},
		Functions:   []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Effective:   &bundle.Effective{PackageVersion: fmt.Sprintf("6.1.192-%d", 2+level)},
		Description: "test patch " + name, Created: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	if mutate != nil {
		mutate(m)
	}
	out := filepath.Join(f.dir, fmt.Sprintf("%s-%d.bundle", name, level))
	w, err := os.Create(out)
	if err != nil {
		f.t.Fatal(err)
	}
	defer w.Close()
	if err := bundle.Create(w, m, ko, f.key); err != nil {
		f.t.Fatal(err)
	}
	return out
}

func newRuntime(t *testing.T, k *fakeKernel, f *fixture) *Runtime {
	return New(Config{Root: k.tr.Root, StateDir: t.TempDir(), RunDir: t.TempDir(), KeysDir: f.keysDir, Poll: 2 * time.Millisecond, sys: k})
}

var ctx = context.Background()

func loadedPatches(t *testing.T, k *fakeKernel) []string {
	ps, err := klp.List(k.tr.Root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
}
