package cli

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stent-dev/stent/internal/fakesys"
	"github.com/stent-dev/stent/inventory"
)

// TestInventoryFollowsLivePatches: the agent's inventory is collected at
// most every 15 minutes, but at once when a live patch is loaded, enabled
// or removed, so the server's plan sees a patch as soon as it is applied
// (it waited up to 15 minutes, and the plan said "update needed" for a
// host the live patch had fixed).
func TestInventoryFollowsLivePatches(t *testing.T) {
	tr := fakesys.NewTree(t, fakesys.V61)
	tr.Write("proc/stat", "cpu  1 0 1 100 0 0 0 0 0 0\nbtime 1796190000\n")
	tr.Write("var/lib/dpkg/status", "Package: linux-image-6.1.0-56-amd64\nStatus: install ok installed\nArchitecture: amd64\nSource: linux-signed-amd64 (6.1.192-2)\nVersion: 6.1.192-2\n\n")
	env := &Env{Root: tr.Root, RunDir: t.TempDir(), StateDir: t.TempDir()}
	inv := inventoryFunc(env)
	patches := func() []string {
		t.Helper()
		b, err := inv(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var i inventory.Inventory
		if err := json.Unmarshal(b, &i); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, lp := range i.LivePatches {
			names = append(names, lp.Name)
		}
		return names
	}
	if got := patches(); len(got) != 0 {
		t.Fatalf("live patches before any = %v", got)
	}
	tr.AddPatch("stent_lp_a", true, true, true, 1)
	if got := patches(); len(got) != 1 || got[0] != "stent_lp_a" {
		t.Fatalf("live patches after loading one = %v, want [stent_lp_a] at once, not 15 minutes later", got)
	}
	// Unchanged: the inventory collected last is reused (no new collection:
	// a file the collection reads changes, the answer does not).
	tr.Write("etc/os-release", "PRETTY_NAME=\"changed\"\nID=debian\nVERSION_ID=\"12\"\n")
	b1, _ := inv(context.Background())
	var i1 inventory.Inventory
	json.Unmarshal(b1, &i1)
	if i1.OS.PrettyName == "changed" {
		t.Errorf("inventory collected again with nothing of the kernel's state changed")
	}
	tr.RemovePatch("stent_lp_a")
	if got := patches(); len(got) != 0 {
		t.Fatalf("live patches after removing it = %v, want none at once", got)
	}
}
