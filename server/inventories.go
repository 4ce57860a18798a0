package server

import (
	"encoding/json"
	"net/http"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// handleInventories streams every enrolled host's latest inventory as JSON
// lines, in host id order, straight from the store page by page: a fleet's
// inventories (10,000 hosts of about 10 KB) are never in memory together.
// Hosts that never sent one come without it, so the client can name them.
// ?label=k=v (repeatable) keeps the hosts with all those labels, as a
// rollout's selector does. The last line says how many hosts came before
// it; a failure midway ends the stream without it, and the client knows
// the stream is incomplete.
func (s *Server) handleInventories(w http.ResponseWriter, r *http.Request) error {
	sel, err := api.ParseLabels(r.URL.Query()["label"])
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	n := 0
	err = s.st.EachInventory(r.Context(), func(h *store.HostInventory) error {
		if !hasLabels(h.Labels, sel) {
			return nil
		}
		n++
		return enc.Encode(api.HostInventory{HostID: h.ID, Hostname: h.Hostname, Labels: h.Labels, LastSeen: h.LastSeen, Inventory: h.Inventory})
	})
	if err != nil && r.Context().Err() != nil {
		return r.Context().Err() // the client went away
	}
	if err != nil {
		// Before the first line this is an ordinary error answer; after
		// it, the stream just ends without its end line.
		return internal(err)
	}
	return enc.Encode(api.HostInventory{End: &api.InventoryEnd{Hosts: n}})
}
