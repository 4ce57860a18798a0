package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stent-dev/stent/api"
)

// Live updates by server-sent events. The overview and a rollout page
// hold one EventSource (htmx's sse extension, vendored) on /ui/events/...; the
// server renders the page's live fragment when the server's state changed
// (Config.Changes: a store commit) or, at the latest, every
// eventsRefresh, and sends it only when it differs from the last one
// sent. The stream is the session's like any page: it calls the admin API
// with the session's token, and ends when the session does. Should the
// stream fail (a proxy that buffers, a browser without EventSource),
// static/live.js polls the fragment's plain URL instead until the stream
// opens again.

const (
	// eventsMinGap is the least time between two renders of a stream:
	// with thousands of hosts checking in, the store commits all the time.
	eventsMinGap = 500 * time.Millisecond
	// overviewMinGap is the same for the overview, whose fragment sums
	// the whole fleet (the counts, the plan's standing, the CVE index):
	// each open overview costs at most one such render this often.
	overviewMinGap = 2 * time.Second
	// eventsRefresh renders the fragment even when nothing said the
	// state changed (the live plan, the clock in "5m ago").
	eventsRefresh = 5 * time.Second
	// eventsKeepAlive is the longest silence of a stream: a comment line
	// keeps proxies from closing it.
	eventsKeepAlive = 15 * time.Second
	// eventsSessionCheck is how often a stream checks that its session
	// still lives (logged out, expired, revoked).
	eventsSessionCheck = 10 * time.Second
)

func (h *Handler) eventRoutes() []route {
	return []route{
		{"GET /ui/events/overview", true, h.overviewEvents},
		{"GET /ui/events/rollouts", true, h.rolloutsEvents},
		{"GET /ui/events/rollouts/{id}", true, h.rolloutEvents},
	}
}

// overviewEvents streams the overview's live fragment (counts, the plan's
// standing, hosts past a deadline, open CVEs, rollouts) as "overview"
// events.
func (h *Handler) overviewEvents(w http.ResponseWriter, r *http.Request, c *call) error {
	return h.stream(w, r, c, "overview", overviewMinGap, func(ctx context.Context) ([]byte, error) {
		data, err := h.overviewData(ctx, c)
		if err != nil {
			return nil, err
		}
		return h.fragment("overview", "live", c, data)
	})
}

// rolloutEvents streams a rollout's progress fragment as "progress"
// events.
func (h *Handler) rolloutEvents(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	return h.stream(w, r, c, "progress", eventsMinGap, func(ctx context.Context) ([]byte, error) {
		ro, err := c.api.Rollout(ctx, id, false)
		if err != nil {
			return nil, err
		}
		return h.fragment("rollout", "progress", c, map[string]any{"Rollout": ro})
	})
}

// rolloutsEvents streams the rollouts page's table as "rollouts" events.
func (h *Handler) rolloutsEvents(w http.ResponseWriter, r *http.Request, c *call) error {
	return h.stream(w, r, c, "rollouts", eventsMinGap, func(ctx context.Context) ([]byte, error) {
		rs, err := c.api.Rollouts(ctx)
		if err != nil {
			return nil, err
		}
		slices.Reverse(rs)
		return h.fragment("rollouts", "table", c, map[string]any{"Rollouts": rs})
	})
}

// fragment renders the template name of page's set.
func (h *Handler) fragment(page, name string, c *call, data any) ([]byte, error) {
	v := view{HTMXConfig: htmxConfig, Data: data}
	if c != nil && c.s != nil {
		v.Who, v.CSRF, v.CanOperate = &c.s.who, c.s.csrf, c.s.canOperate()
	}
	var b bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&b, name, v); err != nil {
		return nil, fmt.Errorf("template %s/%s: %w", page, name, err)
	}
	return b.Bytes(), nil
}

// stream answers r with an event stream of render's output, as event
// events, rendering at most every gap. The first render's error is
// answered as a page's (404 for an unknown rollout); later ones end the
// stream.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, c *call, event string, gap time.Duration, render func(context.Context) ([]byte, error)) error {
	ctx := r.Context()
	last, err := render(ctx)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if err := writeEvent(w, event, last); err != nil {
		return nil
	}
	rc.Flush()
	sent, rendered, checked := time.Now(), time.Now(), time.Now()
	refresh := time.NewTicker(eventsRefresh)
	defer refresh.Stop()
	for {
		var changed <-chan struct{}
		if h.cfg.Changes != nil {
			changed = h.cfg.Changes()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-refresh.C:
		}
		// Let the change land in memory (a commit comes first), and
		// render at most every gap.
		wait := max(gap-time.Since(rendered), 100*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if time.Since(checked) > eventsSessionCheck {
			if _, err := h.sess.get(r); err != nil {
				return nil // logged out or expired: the next page goes to the login
			}
			checked = time.Now()
		}
		b, err := render(ctx)
		rendered = time.Now()
		var se *api.StatusError
		switch {
		case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
			return nil
		case err != nil:
			if ctx.Err() == nil {
				h.cfg.Log.Warn("dashboard event stream ends", "path", r.URL.Path, "err", err)
			}
			return nil
		}
		switch {
		case !bytes.Equal(b, last):
			err = writeEvent(w, event, b)
			last, sent = b, time.Now()
		case time.Since(sent) > eventsKeepAlive:
			_, err = w.Write([]byte(": keep-alive\n\n"))
			sent = time.Now()
		default:
			continue
		}
		if err != nil || rc.Flush() != nil {
			return nil
		}
	}
}

// writeEvent writes one server-sent event: its name, then each line of
// data as a data line.
func writeEvent(w http.ResponseWriter, event string, data []byte) error {
	var b bytes.Buffer
	b.WriteString("event: " + event + "\n")
	for line := range bytes.Lines(data) {
		b.WriteString("data: ")
		b.Write(bytes.TrimRight(line, "\r\n"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
