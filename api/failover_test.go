package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestClientFailover: with several servers a call skips those that cannot
// be reached or answer 503 standby, and the next call starts with the one
// that answered.
func TestClientFailover(t *testing.T) {
	var standbyHits, activeHits atomic.Int32
	standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		standbyHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"standby","code":"standby"}`))
	}))
	defer standby.Close()
	active := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		activeHits.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer active.Close()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"overloaded","code":"busy"}`))
	}))
	defer busy.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()

	c := &Client{BaseURL: dead + ", " + standby.URL + "," + active.URL + "/", Token: "tok", HTTP: http.DefaultClient}
	var out struct{ OK bool }
	for i := 0; i < 3; i++ {
		if err := c.Get(context.Background(), "/x", &out); err != nil || !out.OK {
			t.Fatalf("call %d: Get() = %v, %+v; want the active server's answer", i, err, out)
		}
	}
	if standbyHits.Load() != 1 || activeHits.Load() != 3 {
		t.Errorf("standby asked %d times, active %d; want 1 and 3 (later calls go to the active one first)", standbyHits.Load(), activeHits.Load())
	}
	var n int64
	if _, _, err := c.Download(context.Background(), "/x", 0, &countWriter{&n}); err != nil || n == 0 {
		t.Errorf("Download() = %v after %d bytes", err, n)
	}

	// Only a standby answer moves on: another 503 is the answer.
	c = &Client{BaseURL: busy.URL + "," + active.URL, Token: "tok", HTTP: http.DefaultClient}
	if err := c.Get(context.Background(), "/x", &out); !IsStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("Get() with a busy first server = %v, want its 503", err)
	}
	// Every server standing by: the last standby answer.
	c = &Client{BaseURL: dead + "," + standby.URL, HTTP: http.DefaultClient}
	var se *StatusError
	if err := c.Get(context.Background(), "/x", &out); !IsStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("Get() with no active server = %v, want 503 standby", err)
	} else if se = err.(*StatusError); se.Code != CodeStandby {
		t.Errorf("code = %q, want %q", se.Code, CodeStandby)
	}
}

type countWriter struct{ n *int64 }

func (w *countWriter) Write(b []byte) (int, error) { *w.n += int64(len(b)); return len(b), nil }
