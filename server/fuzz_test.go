package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stent-dev/stent/api"
)

// FuzzAgentAPI posts arbitrary bodies to the calls agents and strangers can
// make: none may crash the server or answer 5xx.
func FuzzAgentAPI(f *testing.F) {
	f.Add(uint8(0), []byte(`{"kernel_release":"6.1.0-56-amd64","patches":[{"name":"x","enabled":true}],"health":"ok"}`))
	f.Add(uint8(1), []byte(`{"request_id":"r","action":"apply","rollout":"r_1","result":"ok","at":"2026-01-01T00:00:00Z"}`))
	f.Add(uint8(2), []byte(`{"token":"ste_x","hostname":"h","labels":{"a":"b"}}`))
	f.Add(uint8(1), []byte(`{"request_id":"`+string(bytes.Repeat([]byte("a"), 200))+`","action":"revert","result":"failed"}`))
	f.Add(uint8(0), []byte(`{"patches":null,"inventory":{"x":[1,2,3]}}`))
	f.Add(uint8(2), []byte(`[`))
	f.Add(uint8(4), []byte(`{"rollout":"kr_1","kernel":"6.1.0-57-amd64","reasons":["newer-kernel-installed"]}`))
	f.Add(uint8(4), []byte(`{"release":true,"lease":"lease_x"}`))
	f.Add(uint8(1), []byte(`{"request_id":"k","action":"kernel-boot","rollout":"kr_1","result":"fell-back","at":"2026-01-01T00:00:00Z"}`))
	f.Add(uint8(0), []byte(`{"kernel_release":"6.1.0-56-amd64","health":"ok","kernel":{"running":"6.1.0-56-amd64","blockers":["x"],"last_boot":{"result":"ok","duration":"1m"}}}`))
	e := startEnv(f, envOpt{})
	defer e.stop()
	creds, err := e.enroll(e.enrollToken("stable", 0), "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	h := e.srv.Handler()
	paths := []string{api.PathSync, api.PathReport, api.PathEnroll, api.PathSync + "?wait=1ms&etag=x", api.PathRebootLease}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := paths[int(which)%len(paths)]
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+creds.Credential)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("POST %s %q: status %d: %s", path, body, rec.Code, rec.Body.String())
		}
	})
}
