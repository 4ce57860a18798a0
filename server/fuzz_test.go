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

// FuzzAdminAPI sends arbitrary bodies to the admin calls that take one
// (rollouts, tokens, enrollment tokens, settings, revert, kernel rollouts
// and their actions, maintenance windows, reboot approvals) with an admin
// token: none may crash the server or answer 5xx.
func FuzzAdminAPI(f *testing.F) {
	f.Add(uint8(0), []byte(`{"bundle":"ab","canary":1,"waves":[{"percent":50}],"max_failure_pct":10,"selector":{"role":"web"}}`))
	f.Add(uint8(1), []byte(`{"name":"ci","role":"operator","ttl":"24h"}`))
	f.Add(uint8(1), []byte(`{"name":"ci","role":"admin","ttl":"-1h"}`))
	f.Add(uint8(2), []byte(`{"name":"web","channel":"stable","labels":{"role":"web"},"ttl":"1h","max_uses":3}`))
	f.Add(uint8(3), []byte(`{"checkin_interval":"30s"}`))
	f.Add(uint8(4), []byte(`{"patch":"lp_x","selector":{"role":"web"}}`))
	f.Add(uint8(5), []byte(`{"kernel":"6.1.0-57-amd64","package_version":"6.1.170-1","selector":{"role":"web"},"canary":1,"window":"nightly"}`))
	f.Add(uint8(6), []byte(`{"when":"Mon-Fri 02:00-04:00","location":"UTC","max_unavailable":"10%","lease_ttl":"30m","selector":{"role":"web"}}`))
	f.Add(uint8(7), []byte(`{"reason":"ops"}`))
	f.Add(uint8(8), []byte(`{"note":"now"}`))
	f.Add(uint8(9), []byte(`{"reason":"looks bad"}`))
	f.Add(uint8(5), []byte(`{"from_plan":{"hosts":[]}}`))
	e := startEnv(f, envOpt{})
	defer e.stop()
	creds, err := e.enroll(e.enrollToken("stable", 0), "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	b := e.publish("lp_fuzz", 1, true, 256)
	r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Canary: 1})
	h := e.srv.Handler()
	// Raw requests on purpose, not api.Client: the bodies are arbitrary
	// bytes, not what a client method would send.
	calls := []struct{ method, path string }{
		{http.MethodPost, api.PathRollouts},
		{http.MethodPost, api.PathTokens},
		{http.MethodPost, api.PathEnrollToken},
		{http.MethodPut, api.PathSettings},
		{http.MethodPost, api.PathRevert},
		{http.MethodPost, api.PathKernelRollouts},
		{http.MethodPut, api.PathWindows + "/nightly"},
		{http.MethodPost, api.PathKernelRollouts + "/kr_missing/pause"},
		{http.MethodPost, api.PathReboots + "/" + creds.HostID + "/approve"},
		{http.MethodPost, api.PathRollouts + "/" + r.ID + "/pause"},
		{http.MethodPost, api.PathRollouts + "/" + r.ID + "/resume"},
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		c := calls[int(which)%len(calls)]
		req := httptest.NewRequestWithContext(context.Background(), c.method, c.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.admin.Token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("%s %s %q: status %d: %s", c.method, c.path, body, rec.Code, rec.Body.String())
		}
	})
}
