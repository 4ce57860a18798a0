package pkgmgr

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSelectCleanup(t *testing.T) {
	k := func(rel string, mods ...func(*Kernel)) Kernel {
		kk := Kernel{Release: rel, Status: "installed"}
		for _, m := range mods {
			m(&kk)
		}
		return kk
	}
	held := func(k *Kernel) { k.Held = true }
	meta := func(k *Kernel) { k.MetaTarget = true }
	five := []Kernel{k("59"), k("58", meta), k("57"), k("56"), k("55", held)}
	for _, tt := range []struct {
		name   string
		ks     []Kernel
		p      Policy
		remove []string
	}{
		{"default keeps running, known-good, newest", []Kernel{k("59"), k("58"), k("57"), k("56"), k("55")},
			Policy{Running: "56", KnownGood: "57"}, []string{"58", "55"}},
		{"meta target and held stay beyond keep", five, Policy{Keep: 2, Running: "56"}, []string{"59", "57"}},
		{"pinned stays", five, Policy{Keep: 1, Running: "59", Pinned: []string{"57"}}, []string{"56"}},
		{"keep 2: running and fallback", []Kernel{k("57"), k("56"), k("55")}, Policy{Keep: 2, Running: "57", KnownGood: "56"}, []string{"55"}},
		{"fell back: running old, newest stays", []Kernel{k("57"), k("56"), k("55")}, Policy{Keep: 2, Running: "56", KnownGood: "56"}, []string{"55"}},
		{"nothing to do", []Kernel{k("57")}, Policy{Running: "57"}, nil},
	} {
		ds, err := SelectCleanup(tt.ks, tt.p)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []string
		for _, d := range ds {
			if d.Remove {
				got = append(got, d.Kernel.Release)
			}
			if d.Remove && (d.Kernel.Release == tt.p.Running || d.Kernel.Release == tt.p.KnownGood || d.Kernel.Held || d.Kernel.MetaTarget) {
				t.Errorf("%s: removes protected %s", tt.name, d.Kernel.Release)
			}
		}
		if d := cmp.Diff(tt.remove, got); d != "" {
			t.Errorf("%s: SelectCleanup removes (-want +got):\n%s", tt.name, d)
		}
	}
	if _, err := SelectCleanup(five, Policy{}); err == nil {
		t.Error("SelectCleanup without the running release: no error")
	}
	if _, err := SelectCleanup(five, Policy{Keep: -1, Running: "59"}); err == nil {
		t.Error("SelectCleanup with keep -1: no error")
	}
}

func TestAptCleanupSequence(t *testing.T) {
	// Running 6.1.0-57, 6.1.0-54 held, 6.1.0-56 the metapackage's target:
	// keep 2 removes 6.1.0-55 only.
	after := testdata(t, "dpkg-query-4kernels.txt")
	after = strings.ReplaceAll(after, "linux-headers-6.1.0-55-amd64\t6.1.192-1\tii \t\n", "")
	after = strings.ReplaceAll(after, "linux-image-6.1.0-55-amd64\t6.1.192-1\tii \t\n", "")
	f := &fakeRunner{t: t, calls: []call{
		{cmd: dpkgQueryCmd, stdout: testdata(t, "dpkg-query-4kernels.txt")},
		{cmd: "apt-mark showhold", stdout: testdata(t, "apt-mark-showhold.txt")},
		{cmd: "apt-get -s remove --purge " + aptOpts + " linux-image-6.1.0-55-amd64 linux-headers-6.1.0-55-amd64", stdout: testdata(t, "apt-remove-sim.txt")},
		{cmd: "apt-get remove --purge " + aptOpts + " linux-image-6.1.0-55-amd64 linux-headers-6.1.0-55-amd64"},
		{cmd: dpkgQueryCmd, stdout: after},
	}}
	m := &Manager{Family: Apt, Runner: f, Running: "6.1.0-57-amd64"}
	removed, err := m.Cleanup(context.Background(), Policy{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Release != "6.1.0-55-amd64" {
		t.Errorf("Cleanup removed %v, want 6.1.0-55-amd64", removed)
	}
	f.done()
}

func TestAptCleanupRefusesCollateral(t *testing.T) {
	// A database where the metapackage target is not recognised (say
	// a metapackage of another flavour pulls it): apt would upgrade the
	// metapackage and install 6.1.0-57 when 6.1.0-56 goes; cleanup refuses.
	db := strings.Replace(testdata(t, "dpkg-query-4kernels.txt"), "linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "", 1)
	f := &fakeRunner{t: t, calls: []call{
		{cmd: dpkgQueryCmd, stdout: db},
		{cmd: "apt-mark showhold", stdout: testdata(t, "apt-mark-showhold.txt")},
		{cmd: "apt-get -s remove --purge " + aptOpts + " linux-image-6.1.0-56-amd64 linux-headers-6.1.0-56-amd64", stdout: testdata(t, "apt-remove-sim-meta.txt")},
	}}
	m := &Manager{Family: Apt, Runner: f, Running: "6.1.0-57-amd64"}
	_, err := m.Cleanup(context.Background(), Policy{Keep: 1, Pinned: []string{"6.1.0-55-amd64"}})
	if !errors.Is(err, ErrProtected) || !strings.Contains(err.Error(), "linux-image-amd64 6.1.192-2 -> 6.1.192-3") {
		t.Fatalf("Cleanup = %v, want ErrProtected naming the metapackage upgrade", err)
	}
	f.done()
}

func TestAptCleanupDryRun(t *testing.T) {
	f := &fakeRunner{t: t, calls: []call{
		{cmd: dpkgQueryCmd, stdout: testdata(t, "dpkg-query-4kernels.txt")},
		{cmd: "apt-mark showhold", stdout: testdata(t, "apt-mark-showhold.txt")},
		{cmd: "apt-get -s remove --purge " + aptOpts + " linux-image-6.1.0-55-amd64 linux-headers-6.1.0-55-amd64", stdout: testdata(t, "apt-remove-sim.txt")},
	}}
	m := &Manager{Family: Apt, Runner: f, Running: "6.1.0-57-amd64"}
	removed, err := m.Cleanup(context.Background(), Policy{Keep: 2, DryRun: true})
	if err != nil || len(removed) != 1 {
		t.Fatalf("Cleanup dry run = %v, %v", removed, err)
	}
	f.done()
}
