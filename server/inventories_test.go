package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/store/storetest"
)

// TestInventories: the stream holds every enrolled host, revoked ones left
// out and hosts that never sent an inventory without one; a viewer may
// read it, a caller without a token may not; ?label= selects.
func TestInventories(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envOpt{engine: eng, interval: time.Second})
			web1, err := os.ReadFile("../policy/testdata/fleet/web1.json")
			if err != nil {
				t.Fatal(err)
			}
			inv := func(i int) json.RawMessage {
				if i == 0 {
					return nil // never sends one
				}
				// A whole inventory: the server refuses one the planner cannot read.
				return json.RawMessage(strings.Replace(string(web1), `"hostname": "web1"`, fmt.Sprintf(`"hostname": "inv-%d"`, i), 1))
			}
			f := e.fleet(4, "stable", func(c *fleetsim.Config) {
				c.Inventory = inv
				c.Labels = func(i int) map[string]string { return map[string]string{"dc": []string{"fra", "ams"}[i%2]} }
			})
			e.waitHosts(4)
			revoked := f.Hosts[3].Creds.HostID
			e.ok(e.admin.RevokeHost(context.Background(), revoked))

			viewer, err := e.admin.CreateToken(context.Background(), api.TokenRequest{Name: "ro", Role: api.RoleViewer})
			e.ok(err)
			vc := &api.Client{BaseURL: e.admin.BaseURL, Token: viewer.Secret, HTTP: e.admin.HTTP}
			read := func(c *api.Client, sel map[string]string) (map[string]api.HostInventory, error) {
				got := map[string]api.HostInventory{}
				last := ""
				_, err := c.Inventories(context.Background(), sel, func(h *api.HostInventory) error {
					if h.HostID <= last {
						t.Errorf("host %s after %s: want host id order", h.HostID, last)
					}
					last = h.HostID
					got[h.HostID] = *h
					return nil
				})
				return got, err
			}
			// Check-ins carrying the inventories may still be on their way.
			var got map[string]api.HostInventory
			e.waitFor(30*time.Second, "inventories of hosts 1 and 2", func() bool {
				var err error
				if got, err = read(vc, nil); err != nil {
					t.Fatalf("viewer reading inventories: %v", err)
				}
				return len(got[f.Hosts[1].Creds.HostID].Inventory) > 0 && len(got[f.Hosts[2].Creds.HostID].Inventory) > 0
			})
			if len(got) != 3 {
				t.Errorf("Inventories() = %d hosts, want 3 (the revoked one left out)", len(got))
			}
			if _, ok := got[revoked]; ok {
				t.Errorf("Inventories() has the revoked host %s", revoked)
			}
			for i, h := range f.Hosts[:3] {
				g, ok := got[h.Creds.HostID]
				if !ok {
					t.Errorf("Inventories() lacks host %d (%s)", i, h.Creds.HostID)
					continue
				}
				if g.Hostname != h.Name || g.Labels["dc"] == "" || g.LastSeen.IsZero() {
					t.Errorf("Inventories()[%s] = %s %v seen %v, want hostname %s, its labels and a last seen time", h.Creds.HostID, g.Hostname, g.Labels, g.LastSeen, h.Name)
				}
				var want json.RawMessage
				if v := inv(i); v != nil {
					want, _ = json.Marshal(v) // compacted, one line
				}
				if d := cmp.Diff(string(want), string(g.Inventory)); d != "" {
					t.Errorf("Inventories()[%s].Inventory mismatch (-want +got):\n%s", h.Creds.HostID, d)
				}
			}

			fra, err := read(e.admin, map[string]string{"dc": "fra"})
			if err != nil {
				t.Fatalf("Inventories(dc=fra): %v", err)
			}
			if len(fra) != 2 || fra[f.Hosts[0].Creds.HostID].HostID == "" || fra[f.Hosts[2].Creds.HostID].HostID == "" {
				t.Errorf("Inventories(dc=fra) = %v, want hosts 0 and 2", fra)
			}
			if _, err := read(e.admin, map[string]string{"dc": "f r a"}); !api.IsStatus(err, http.StatusBadRequest) {
				t.Errorf("Inventories(bad selector) = %v, want 400", err)
			}
			anon := &api.Client{BaseURL: e.admin.BaseURL, HTTP: e.admin.HTTP}
			if _, err := read(anon, nil); !api.IsStatus(err, http.StatusUnauthorized) {
				t.Errorf("Inventories() without a token = %v, want 401", err)
			}
		})
	}
}
