// Package feedtest serves feed files over HTTPS for tests, the way a feed
// mirror does: with an ETag and a Last-Modified per file, answering 304 Not
// Modified to a request that names the current ones, and counting what it
// served.
package feedtest

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"
)

// Server is a feed mirror on an httptest TLS server.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	files   map[string]file
	full    map[string]int // 200 answers per path
	notMod  map[string]int // 304 answers per path
	clock   time.Time
	refused bool
}

type file struct {
	data    []byte
	etag    string
	modTime time.Time
}

// New starts a server, stopped when the test ends.
func New(t testing.TB) *Server {
	s := &Server{files: map[string]file{}, full: map[string]int{}, notMod: map[string]int{}, clock: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Put serves data at path from now on, with a new ETag and Last-Modified
// when it differs from what was served there.
func (s *Server) Put(path string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := sha256.Sum256(data)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if f, ok := s.files[path]; ok && f.etag == etag {
		return
	}
	s.clock = s.clock.Add(time.Hour)
	s.files[path] = file{data: data, etag: etag, modTime: s.clock}
}

// PutFile serves the file at name at path.
func (s *Server) PutFile(t testing.TB, path, name string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s.Put(path, data)
}

// Refuse makes every request fail with 503 (refuse true) or be served
// again.
func (s *Server) Refuse(refuse bool) {
	s.mu.Lock()
	s.refused = refuse
	s.mu.Unlock()
}

// Served returns how many times path was answered 200 and 304.
func (s *Server) Served(path string) (full, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full[path], s.notMod[path]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f, ok := s.files[r.URL.Path]
	refused := s.refused
	if ok && !refused {
		if r.Header.Get("If-None-Match") == f.etag {
			s.notMod[r.URL.Path]++
		} else {
			s.full[r.URL.Path]++
		}
	}
	s.mu.Unlock()
	switch {
	case refused:
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	case !ok:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Last-Modified", f.modTime.Format(http.TimeFormat))
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.data)
}
