package api

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The client offers only ECDHE AEAD suites on TLS 1.2: a server that
// speaks nothing but a CBC-SHA1 suite (or static RSA key exchange) is
// refused at the handshake (the test server's certificate is RSA).
func TestClientRefusesCBCSuites(t *testing.T) {
	for _, tt := range []struct {
		suite uint16
		ok    bool
	}{
		{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false},
		{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},
		{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true},
		{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true},
	} {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tt.suite}}
		srv.StartTLS()
		sum := sha256.Sum256(srv.Certificate().Raw)
		hc, err := NewHTTPClient(TLSOptions{Fingerprint: fmt.Sprintf("sha256:%x", sum)})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("server with only %s: client error %v, want success %v", tls.CipherSuiteName(tt.suite), err, tt.ok)
		}
		srv.Close()
	}
	for _, s := range CipherSuites {
		for _, in := range tls.InsecureCipherSuites() {
			if s == in.ID {
				t.Errorf("CipherSuites holds insecure %s", in.Name)
			}
		}
		if name := tls.CipherSuiteName(s); !(strings.Contains(name, "GCM") || strings.Contains(name, "CHACHA20")) || !strings.Contains(name, "ECDHE") {
			t.Errorf("CipherSuites holds %s, want ECDHE with an AEAD", name)
		}
	}
}
