package web

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/stent-dev/stent/api"
)

// The operator's buttons: approving the live plan's proposed actions,
// pausing and resuming kernel rollouts, approving a host's emergency
// reboot outside its window. Each is a plain form (works without
// script) carrying the session's CSRF token, and each calls the admin API
// with the session's token, so the API's role check (operator or admin)
// and audit entry apply; a viewer's page shows no button and a viewer's
// post is refused by the API.

// actionRoutes are the routes of this file, added to routes().
func (h *Handler) actionRoutes() []route {
	return []route{
		{"GET /ui/actions", true, h.actions},
		{"POST /ui/actions/{id}/approve", true, h.approveAction},
		{"POST /ui/kernel-rollouts/{id}/{action}", true, h.kernelRolloutAction},
		{"POST /ui/reboots/{host}/approve", true, h.approveReboot},
	}
}

// actionGroup is the actions of one kernel situation group.
type actionGroup struct {
	ID       string
	Actions  []api.PlanAction
	Proposed int
}

// maxActionRows bounds the actions the page shows.
const maxActionRows = 500

func (h *Handler) actions(w http.ResponseWriter, r *http.Request, c *call) error {
	all := r.URL.Query().Get("all") == "1"
	l, err := c.api.Actions(r.Context(), all)
	if err != nil {
		return err
	}
	more := 0
	if len(l.Actions) > maxActionRows {
		more = len(l.Actions) - maxActionRows
		l.Actions = l.Actions[:maxActionRows]
	}
	// The API answers proposed first; groups keep that order.
	var groups []*actionGroup
	byID := map[string]*actionGroup{}
	proposed := 0
	for _, a := range l.Actions {
		g := byID[a.Group]
		if g == nil {
			g = &actionGroup{ID: a.Group}
			byID[a.Group] = g
			groups = append(groups, g)
		}
		g.Actions = append(g.Actions, a)
		if a.State == api.ActionProposed {
			g.Proposed++
			proposed++
		}
	}
	h.render(w, http.StatusOK, "actions", c, "Actions", "", map[string]any{
		"List": l, "Groups": groups, "Proposed": proposed, "All": all, "More": more,
	})
	return nil
}

// formReason is the form's reason, or one saying where the change came
// from.
func formReason(r *http.Request) string {
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		reason = "from the dashboard"
	}
	return reason
}

// back sends the browser to page, which shows msg once (kept in the
// session, not in the URL: a link cannot put words on a page).
func (h *Handler) back(w http.ResponseWriter, r *http.Request, c *call, page, msg string) {
	h.sess.setFlash(c.s, msg)
	http.Redirect(w, r, Prefix+page, http.StatusSeeOther)
}

func (h *Handler) approveAction(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	a, err := c.api.ApproveAction(r.Context(), id, api.ActionApproval{Reason: formReason(r)})
	if err != nil {
		return err
	}
	msg := "Approved " + a.Kind + " " + a.Target + " for " + strconv.Itoa(a.HostCount) + " host(s): " + a.State
	if a.Error != "" {
		msg += " — not carried out yet: " + a.Error
	}
	h.back(w, r, c, "actions", msg)
	return nil
}

var kernelRolloutActions = map[string]bool{"pause": true, "resume": true}

func (h *Handler) kernelRolloutAction(w http.ResponseWriter, r *http.Request, c *call) error {
	id, action := r.PathValue("id"), r.PathValue("action")
	if !kernelRolloutActions[action] {
		return &pageError{status: http.StatusNotFound, msg: "no kernel rollout action " + strconv.Quote(action) + ": want pause or resume"}
	}
	kr, err := c.api.KernelRolloutAction(r.Context(), id, action, api.RolloutActionRequest{Reason: formReason(r)})
	if err != nil {
		return err
	}
	h.back(w, r, c, "kernel-rollouts", "Kernel rollout "+kr.ID+" of "+kr.Release+" is "+kr.State+".")
	return nil
}

func (h *Handler) approveReboot(w http.ResponseWriter, r *http.Request, c *call) error {
	host := r.PathValue("host")
	if err := c.api.ApproveReboot(r.Context(), host, api.RebootApproval{Reason: formReason(r)}); err != nil {
		return err
	}
	h.back(w, r, c, "reboots", "Approved the emergency reboot of "+host+".")
	return nil
}
