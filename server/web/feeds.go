package web

import (
	"net/http"
	"time"

	"github.com/stent-dev/stent/api"
)

// The feeds page: each vulnerability feed the server keeps for the live
// plan (GET /v1/admin/feeds): where it comes from, when it last loaded,
// how old the copy in use is, what its last refresh said, and its records.

func (h *Handler) feeds(w http.ResponseWriter, r *http.Request, c *call) error {
	st, err := c.api.Feeds(r.Context())
	if err != nil {
		return err
	}
	failing := 0
	for _, f := range st.Feeds {
		if f.Error != "" {
			failing++
		}
	}
	h.render(w, http.StatusOK, "feeds", c, "Feeds", "", map[string]any{"Status": st, "Failing": failing, "Now": h.cfg.Now()})
	return nil
}

// feedAge is how old a feed's copy in use is: since it was downloaded, or
// since its content last changed for a local path.
func feedAge(f api.FeedStatus, now time.Time) string {
	var t time.Time
	switch {
	case f.FetchedAt != nil:
		t = *f.FetchedAt
	case !f.LastChange.IsZero():
		t = f.LastChange
	default:
		return "-"
	}
	if d := now.Sub(t); d > 0 {
		return roundDur(d)
	}
	return "0s"
}
