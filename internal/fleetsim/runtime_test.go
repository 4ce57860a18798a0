package fleetsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestRuntimeReplaceAndRevert(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	write := func(name string, level int64, replace bool) string {
		data, err := MakeBundle(key, name, "6.1.0-56-amd64", level, replace, 128)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".stb")
		os.WriteFile(p, data, 0o644)
		return p
	}
	ctx := context.Background()
	rt := NewRuntime("6.1.0-56-amd64")
	for _, p := range []string{write("lp_a", 1, false), write("lp_b", 1, false)} {
		if _, err := rt.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if !rt.Loaded("lp_a") || !rt.Loaded("lp_b") {
		t.Fatalf("after two stacked applies: lp_a %v lp_b %v", rt.Loaded("lp_a"), rt.Loaded("lp_b"))
	}
	if _, err := rt.Apply(ctx, write("lp_c", 2, true)); err != nil {
		t.Fatal(err)
	}
	if rt.Loaded("lp_a") || rt.Loaded("lp_b") || !rt.Loaded("lp_c") {
		t.Errorf("a cumulative patch did not replace the others")
	}
	if err := rt.Revert(ctx, "lp_c"); err != nil || rt.Loaded("lp_c") || rt.Reverts("lp_c") != 1 {
		t.Errorf("Revert(lp_c) = %v; loaded %v", err, rt.Loaded("lp_c"))
	}
	if err := rt.Revert(ctx, "lp_c"); err == nil {
		t.Errorf("reverting a patch that is not loaded succeeded")
	}
	other := NewRuntime("6.1.0-55-amd64")
	if _, err := other.Apply(ctx, write("lp_d", 1, true)); err == nil {
		t.Errorf("applying a bundle for another kernel succeeded")
	}
}

// TestRuntimeSettersRace: tests change a runtime's settings while agents
// apply through it; under -race this fails if a setting is read or written
// without the runtime's lock.
func TestRuntimeSettersRace(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	data, err := MakeBundle(key, "lp_race", "6.1.0-56-amd64", 1, true, 128)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lp_race.stb")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rt := NewRuntime("6.1.0-56-amd64")
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				rt.Apply(ctx, p)
			}
		}()
	}
	for j := 0; j < 50; j++ {
		rt.SetApplyDelay(time.Duration(j%2) * time.Microsecond)
		rt.SetFail(func(string) error { return errors.New("simulated failure") })
		rt.SetAfterApply(func(context.Context, string) {})
		rt.SetFail(nil)
		rt.SetAfterApply(nil)
	}
	wg.Wait()
	if rt.Applies("lp_race") == 0 {
		t.Errorf("no apply succeeded")
	}
}
