package web

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/stent-dev/stent/api"
)

// count is one row of a "how many hosts have X" table.
type count struct {
	Key string
	N   int
}

func topCounts(m map[string]int, n int) (rows []count, rest int) {
	for k, v := range m {
		rows = append(rows, count{k, v})
	}
	slices.SortFunc(rows, func(a, b count) int {
		return cmp.Or(cmp.Compare(b.N, a.N), strings.Compare(a.Key, b.Key))
	})
	if len(rows) > n {
		for _, r := range rows[n:] {
			rest += r.N
		}
		rows = rows[:n]
	}
	return rows, rest
}

// active reports whether a rollout (live patch or kernel) is still under
// way: running, paused, halted or reverting.
func active(state string) bool {
	switch state {
	case api.RolloutRunning, api.RolloutPaused, api.RolloutHalted, api.RolloutReverting:
		return true
	}
	return false
}

// rebootSummary counts the hosts of a RebootStatus by what holds them.
type rebootSummary struct {
	Waiting, Rebooting, Blocked, Approval, FellBack, Failed int
}

func summarize(rs *api.RebootStatus) rebootSummary {
	var s rebootSummary
	for _, h := range rs.Hosts {
		switch {
		case h.Lease != "":
			s.Rebooting++
		case h.State == api.KernelFellBack || (h.LastBoot != nil && h.LastBoot.Result == api.ResultFellBack && h.State == "idle"):
			s.FellBack++
		case h.State == api.KernelFailed:
			s.Failed++
		case len(h.Blockers) > 0:
			s.Blocked++
		case h.Approval:
			s.Approval++
		case h.Wait != "":
			s.Waiting++
		}
	}
	return s
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, c *call) error {
	data, err := h.overviewData(r.Context(), c)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("fragment") == "1" {
		h.renderTemplate(w, http.StatusOK, "overview", "live", c, "", "", data)
		return nil
	}
	h.render(w, http.StatusOK, "overview", c, "Fleet", "", data)
	return nil
}

// overviewData is what the overview's live fragment shows; its event
// stream renders it again as the fleet changes.
func (h *Handler) overviewData(ctx context.Context, c *call) (map[string]any, error) {
	fleet, err := c.api.Fleet(ctx)
	if err != nil {
		return nil, err
	}
	krs, err := c.api.KernelRollouts(ctx)
	if err != nil {
		return nil, err
	}
	rb, err := c.api.SearchReboots(ctx, api.RebootQuery{Busy: true})
	if err != nil {
		return nil, err
	}
	// The live plan's standing per rule. After "~" (past every host id:
	// "h_" and hex) the page holds no host's plan, a large JSON, while the
	// counts cover every host.
	plan, err := c.api.Plan(ctx, api.PlanQuery{Limit: 1, After: "~"})
	if err != nil {
		return nil, err
	}
	kernels, otherKernels := topCounts(fleet.ByKernel, 10)
	patches, otherPatches := topCounts(fleet.ByPatch, 10)
	var live []api.Rollout
	for _, ro := range fleet.Rollouts {
		if active(ro.State) {
			live = append(live, ro)
		}
	}
	var kernelLive []api.KernelRollout
	for _, kr := range krs {
		if active(kr.State) {
			kernelLive = append(kernelLive, kr)
		}
	}
	data := map[string]any{
		"Fleet": fleet, "Kernels": kernels, "OtherKernels": otherKernels, "Patches": patches, "OtherPatches": otherPatches,
		"Rollouts": live, "AllRollouts": len(fleet.Rollouts), "KernelRollouts": kernelLive, "Reboots": summarize(rb), "Plan": plan,
	}
	if err := h.overviewExposure(ctx, c, data); err != nil {
		return nil, err
	}
	return data, nil
}

func (h *Handler) hosts(w http.ResponseWriter, r *http.Request, c *call) error {
	v := r.URL.Query()
	q := api.HostQuery{Query: v.Get("q"), Kernel: v.Get("kernel"), State: v.Get("state"), Limit: 50}
	label := strings.TrimSpace(v.Get("label"))
	if label != "" {
		k, val, ok := strings.Cut(label, "=")
		if !ok || k == "" {
			return &pageError{status: http.StatusBadRequest, msg: "label " + strconv.Quote(label) + ": want key=value, as in role=web"}
		}
		q.Labels = map[string]string{k: val}
	}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return &pageError{status: http.StatusBadRequest, msg: "offset " + strconv.Quote(s) + ": want a whole number, 0 or more"}
		}
		q.Offset = n
	}
	page, err := c.api.SearchHosts(r.Context(), q)
	if err != nil {
		return err
	}
	data := map[string]any{
		"Page": page, "Q": q.Query, "Label": label, "Kernel": q.Kernel, "State": q.State, "States": api.HostStates, "URL": r.URL,
		"From": min(page.Offset+1, page.Total), "To": page.Offset + len(page.Hosts),
		"Prev": max(page.Offset-page.Limit, 0), "HasPrev": page.Offset > 0,
		"Next": page.Offset + page.Limit, "HasNext": page.Offset+len(page.Hosts) < page.Total,
	}
	h.render(w, http.StatusOK, "hosts", c, "Hosts", "", data)
	return nil
}

func (h *Handler) host(w http.ResponseWriter, r *http.Request, c *call) error {
	ctx := r.Context()
	id := r.PathValue("id")
	host, err := c.api.Host(ctx, id)
	if err != nil {
		return err
	}
	history, err := c.api.Audit(ctx, api.AuditQuery{Target: id, Newest: true, Limit: 50})
	if err != nil {
		return err
	}
	rb, err := c.api.SearchReboots(ctx, api.RebootQuery{Host: id})
	if err != nil {
		return err
	}
	var reboot *api.HostReboot
	for i := range rb.Hosts {
		if rb.Hosts[i].HostID == id {
			reboot = &rb.Hosts[i]
		}
	}
	// A host that sent no inventory is not in the plan: the API says so
	// with a 404, which the page shows as the reason.
	var hp *api.PlanHost
	planErr := ""
	plan, err := c.api.Plan(ctx, api.PlanQuery{Host: id, Limit: 1})
	var se *api.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		planErr = se.Message
	case err != nil:
		return err
	default:
		planErr = plan.Error
		if len(plan.Page) > 0 {
			hp = &plan.Page[0]
		}
	}
	h.render(w, http.StatusOK, "host", c, host.Hostname, "", map[string]any{"Host": host, "History": history, "Reboot": reboot, "PlanError": planErr, "Plan": hp})
	return nil
}

func (h *Handler) rollouts(w http.ResponseWriter, r *http.Request, c *call) error {
	rs, err := c.api.Rollouts(r.Context())
	if err != nil {
		return err
	}
	slices.Reverse(rs) // newest first
	// The table alone: live.js's polling fallback.
	if r.URL.Query().Get("fragment") == "table" {
		h.renderTemplate(w, http.StatusOK, "rollouts", "table", c, "", "", map[string]any{"Rollouts": rs})
		return nil
	}
	h.render(w, http.StatusOK, "rollouts", c, "Rollouts", "", map[string]any{"Rollouts": rs})
	return nil
}

// maxRolloutHosts bounds the host rows a rollout page shows: the hosts
// that need a look (failed, in flight) first.
const maxRolloutHosts = 200

func hostOrder(state string) int {
	switch state {
	case "failed", "refused":
		return 0
	case "released", "applied":
		return 1
	case "pending":
		return 2
	}
	return 3
}

func (h *Handler) rollout(w http.ResponseWriter, r *http.Request, c *call) error {
	ro, err := c.api.Rollout(r.Context(), r.PathValue("id"), true)
	if err != nil {
		return err
	}
	slices.SortStableFunc(ro.Hosts, func(a, b api.RolloutHost) int {
		return cmp.Or(cmp.Compare(hostOrder(a.State), hostOrder(b.State)), strings.Compare(a.Hostname, b.Hostname))
	})
	more := 0
	if len(ro.Hosts) > maxRolloutHosts {
		more = len(ro.Hosts) - maxRolloutHosts
		ro.Hosts = ro.Hosts[:maxRolloutHosts]
	}
	h.render(w, http.StatusOK, "rollout", c, "Rollout "+ro.Name, "", map[string]any{"Rollout": ro, "More": more})
	return nil
}

// rolloutProgress is the live part of a rollout page, which htmx fetches
// every two seconds: counts, the progress bar and the buttons.
func (h *Handler) rolloutProgress(w http.ResponseWriter, r *http.Request, c *call) error {
	ro, err := c.api.Rollout(r.Context(), r.PathValue("id"), false)
	if err != nil {
		return err
	}
	h.renderTemplate(w, http.StatusOK, "rollout", "progress", c, "", "", map[string]any{"Rollout": ro})
	return nil
}

var rolloutActions = map[string]bool{"pause": true, "resume": true, "revert": true}

// rolloutAction pauses, resumes or reverts a rollout through the API
// (which refuses a viewer) and answers the fresh progress fragment, or,
// for a plain form, sends the browser back to the rollout page.
func (h *Handler) rolloutAction(w http.ResponseWriter, r *http.Request, c *call) error {
	id, action := r.PathValue("id"), r.PathValue("action")
	if !rolloutActions[action] {
		return &pageError{status: http.StatusNotFound, msg: "no rollout action " + strconv.Quote(action) + ": want pause, resume or revert"}
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		reason = "from the dashboard"
	}
	ro, err := c.api.RolloutAction(r.Context(), id, action, api.RolloutActionRequest{Reason: reason})
	if err != nil {
		return err
	}
	if r.Header.Get("HX-Request") != "true" {
		http.Redirect(w, r, Prefix+"rollouts/"+url.PathEscape(id), http.StatusSeeOther)
		return nil
	}
	h.renderTemplate(w, http.StatusOK, "rollout", "progress", c, "", "", map[string]any{"Rollout": ro})
	return nil
}

func (h *Handler) kernelRollouts(w http.ResponseWriter, r *http.Request, c *call) error {
	krs, err := c.api.KernelRollouts(r.Context())
	if err != nil {
		return err
	}
	slices.Reverse(krs)
	h.render(w, http.StatusOK, "kernel-rollouts", c, "Kernel rollouts", "", map[string]any{"Rollouts": krs, "States": kernelStates})
	return nil
}

var kernelStates = []string{api.KernelPending, api.KernelInstalling, api.KernelInstalled, api.KernelRebooting, api.KernelHealthy, api.KernelFellBack, api.KernelFailed}

// maxRebootRows bounds the reboot page's host table.
const maxRebootRows = 500

func (h *Handler) reboots(w http.ResponseWriter, r *http.Request, c *call) error {
	rb, err := c.api.SearchReboots(r.Context(), api.RebootQuery{Busy: true})
	if err != nil {
		return err
	}
	fleet, err := c.api.Fleet(r.Context())
	if err != nil {
		return err
	}
	rows := rb.Hosts // in hostname order
	more := 0
	if len(rows) > maxRebootRows {
		more = len(rows) - maxRebootRows
		rows = rows[:maxRebootRows]
	}
	h.render(w, http.StatusOK, "reboots", c, "Reboots", "", map[string]any{
		"Windows": rb.Windows, "Hosts": rows, "More": more, "Summary": summarize(rb), "Idle": fleet.Hosts - len(rows) - more,
	})
	return nil
}

// auditPage is how many audit entries a page shows.
const auditPage = 100

func (h *Handler) audit(w http.ResponseWriter, r *http.Request, c *call) error {
	v := r.URL.Query()
	q := api.AuditQuery{Action: strings.TrimSpace(v.Get("action")), Target: strings.TrimSpace(v.Get("target")), Newest: true, Limit: auditPage}
	if s := v.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return &pageError{status: http.StatusBadRequest, msg: "before " + strconv.Quote(s) + ": want an audit entry id"}
		}
		q.Before = n
	}
	es, err := c.api.Audit(r.Context(), q)
	if err != nil {
		return err
	}
	var older int64
	if len(es) == auditPage {
		older = es[len(es)-1].ID
	}
	h.render(w, http.StatusOK, "audit", c, "Audit log", "", map[string]any{
		"Entries": es, "Action": q.Action, "Target": q.Target, "Older": older, "URL": r.URL, "Paged": q.Before != 0,
	})
	return nil
}
