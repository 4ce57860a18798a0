package web_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
)

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readEvents reads the events of an event stream into a channel until the
// body ends.
func readEvents(resp *http.Response) <-chan sseEvent {
	ch := make(chan sseEvent, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || data != nil {
					ev.data = strings.Join(data, "\n")
					ch <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return ch
}

// nextEvent waits for an event whose data has want.
func nextEvent(t *testing.T, ch <-chan sseEvent, name, want string, d time.Duration) sseEvent {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the event stream ended before a %s event with %q", name, want)
			}
			if ev.name == name && strings.Contains(ev.data, want) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event with %q after %v", name, want, d)
		}
	}
}

// TestEventStreams: a rollout page's stream sends its progress fragment,
// then a new one when the rollout changes (paused through the API, not
// the page); the rollouts list's stream likewise; a viewer's stream has no
// buttons; an unknown rollout is a 404 page, not a stream; no session, no
// stream.
func TestEventStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and 4 simulated hosts")
	}
	e := startEnv(t, 4, 20*time.Second)
	ctx := context.Background()
	r := e.rollout("lp_sse_1")
	c := e.browser()
	login(t, c, e.url, e.admin.Token)

	open := func(c *http.Client, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+path, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := open(c, "/ui/events/rollouts/"+r.ID)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /ui/events/rollouts/%s = %d %s, want an event stream", r.ID, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readEvents(resp)
	first := nextEvent(t, events, "progress", `id="rollout-state">running<`, 10*time.Second)
	if !strings.Contains(first.data, `id="pause"`) || !strings.Contains(first.data, `<section id="progress"`) {
		t.Errorf("the first progress event has no pause button:\n%s", first.data)
	}
	list := readEvents(open(c, "/ui/events/rollouts"))
	nextEvent(t, list, "rollouts", `state-running">running<`, 10*time.Second)

	// A change made elsewhere arrives without asking.
	start := time.Now()
	_, err := e.admin.RolloutAction(ctx, r.ID, "pause", api.RolloutActionRequest{Reason: "test"})
	e.ok(err)
	paused := nextEvent(t, events, "progress", `id="rollout-state">paused<`, 10*time.Second)
	t.Logf("the pause arrived on the stream %v after the API call", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(paused.data, `id="resume"`) {
		t.Errorf("the paused progress event has no resume button")
	}
	nextEvent(t, list, "rollouts", `state-paused">paused<`, 10*time.Second)

	// A viewer's stream: the same progress, no button.
	v := e.browser()
	login(t, v, e.url, e.token("sse-viewer", api.RoleViewer))
	vev := nextEvent(t, readEvents(open(v, "/ui/events/rollouts/"+r.ID)), "progress", `paused`, 10*time.Second)
	if strings.Contains(vev.data, `id="resume"`) || !strings.Contains(vev.data, `id="readonly"`) {
		t.Errorf("the viewer's progress event has buttons:\n%s", vev.data)
	}

	// No stream for an unknown rollout, nor without a session.
	if st, _, page := get(t, c, e.url, "/ui/events/rollouts/ro_nosuch"); st != http.StatusNotFound || !strings.Contains(page, "ro_nosuch") {
		t.Errorf("stream of an unknown rollout = %d, want a 404 naming it:\n%s", st, page)
	}
	if st, loc, _ := get(t, e.browser(), e.url, "/ui/events/rollouts/"+r.ID); st != http.StatusSeeOther || loc != "/ui/login" {
		t.Errorf("stream without a session = %d to %q, want 303 to /ui/login", st, loc)
	}
}

// TestVendoredSSE: the sse extension is the release VENDOR.md names, and
// its licence is beside it.
func TestVendoredSSE(t *testing.T) {
	b, err := os.ReadFile("static/htmx-ext-sse.min.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	doc, err := os.ReadFile("static/VENDOR.md")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sum[:]); !strings.Contains(string(doc), got) || !strings.Contains(string(doc), "| 2.2.4 |") {
		t.Errorf("static/htmx-ext-sse.min.js has sha256 %s, which static/VENDOR.md does not name with its version", got)
	}
	if lic, err := os.ReadFile("static/htmx-ext-sse.LICENSE"); err != nil || !strings.Contains(string(lic), "BSD Zero Clause License") {
		t.Errorf("static/htmx-ext-sse.LICENSE: %v, want the 0BSD licence", err)
	}
}
