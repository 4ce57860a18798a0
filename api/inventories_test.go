package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestInventoriesStream: lines come to fn one by one with the selector
// sent as ?label=; a stream without its end line, or whose end line
// counts other hosts, is an error.
func TestInventoriesStream(t *testing.T) {
	const two = `{"host_id":"h_1","hostname":"a","inventory":{"hostname":"a"}}
{"host_id":"h_2","hostname":"b"}
`
	tests := []struct {
		name    string
		body    string
		wantN   int
		wantErr string
	}{
		{"whole", two + `{"end":{"hosts":2}}` + "\n", 2, ""},
		{"no end line", two, 2, "stream cut short after 2 hosts"},
		{"cut inside a line", two[:20], 0, "stream cut short after 0 hosts"},
		{"count mismatch", two + `{"end":{"hosts":3}}` + "\n", 2, "the server says it sent 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var query string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				query = r.URL.RawQuery
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c := &Client{BaseURL: srv.URL, HTTP: srv.Client()}
			var ids []string
			n, err := c.Inventories(context.Background(), map[string]string{"dc": "fra", "a": "b"}, func(h *HostInventory) error {
				ids = append(ids, h.HostID)
				return nil
			})
			if query != "label=a%3Db&label=dc%3Dfra" {
				t.Errorf("query = %q, want both labels in order", query)
			}
			if n != tt.wantN || len(ids) != tt.wantN {
				t.Errorf("Inventories() = %d hosts (%v), want %d", n, ids, tt.wantN)
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Inventories() error = %v, want %q", err, tt.wantErr)
			}
			if tt.name == "no end line" && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("Inventories() error = %v, want it to wrap io.ErrUnexpectedEOF", err)
			}
		})
	}
}
