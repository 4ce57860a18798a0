package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// FuzzClientResponses: whatever a server (or something posing as one)
// answers, the agent's client neither panics nor reports more downloaded
// bytes than it wrote; a ranged download answered without the range is a
// restart, never appended.
func FuzzClientResponses(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"patches":[{"name":"x","bundle":"ab"}],"etag":"e","interval":"60s"}`), int64(0))
	f.Add(206, "application/octet-stream", []byte("abcdef"), int64(3))
	f.Add(200, "application/octet-stream", []byte("abcdef"), int64(3))
	f.Add(416, "text/plain", []byte(""), int64(10))
	f.Add(503, "application/json", []byte(`{"error":"standby","message":"x"}`), int64(0))
	f.Add(400, "application/json", []byte(`{"error":`), int64(0))
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte, offset int64) {
		if status < 200 || status > 599 || status == 204 || status == 304 {
			status = 200
		}
		if offset < 0 {
			offset = -offset
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(status)
			w.Write(body)
		}))
		defer srv.Close()
		c := &Client{BaseURL: srv.URL, Token: "sth_x", HTTP: srv.Client()}
		ctx := context.Background()
		var sr SyncResponse
		c.Do(ctx, http.MethodPost, PathSync, Checkin{KernelRelease: "6.1.0-56-amd64", Health: HealthOK}, &sr)
		var buf bytes.Buffer
		n, restart, err := c.Download(ctx, PathBundles+"ab", offset, &buf)
		if n != int64(buf.Len()) {
			t.Errorf("Download = %d bytes, wrote %d", n, buf.Len())
		}
		if offset > 0 && status == 200 && (!restart || buf.Len() != 0) {
			t.Errorf("ranged Download answered 200: restart %v, %d bytes appended, %v; want a restart and nothing", restart, buf.Len(), err)
		}
	})
}
