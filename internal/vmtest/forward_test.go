package vmtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestForward: a guest reaches an HTTP server on the host's loopback
// through Options.Forwards, several connections in a row and at once, and
// nothing else on the network.
func TestForward(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "hello from the host, %s\n", r.URL.Path)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	k := Kernel(t, DefaultABI)
	vm := Boot(ctx, t, Options{Kernel: k, Forwards: []Forward{{GuestPort: 8080, Host: ln.Addr().String()}}})
	r, err := vm.Sh(ctx, "for i in 1 2 3; do wget -q -O - http://host.vmtest:8080/seq$i; done; "+
		"wget -q -O /tmp/a http://10.0.2.100:8080/par1 & wget -q -O /tmp/b http://10.0.2.100:8080/par2 & wait; cat /tmp/a /tmp/b")
	if err != nil {
		t.Fatalf("guest wget: %v", err)
	}
	for _, want := range []string{"seq1", "seq2", "seq3", "par1", "par2"} {
		if !strings.Contains(r.Stdout, "hello from the host, /"+want) {
			t.Errorf("guest output lacks %s:\n%s", want, r.Stdout)
		}
	}
	if n := hits.Load(); n != 5 {
		t.Errorf("host server saw %d requests, want 5", n)
	}
	// restrict=on: no other address is reachable.
	if r, err := vm.Sh(ctx, "wget -q -T 3 -O - http://10.0.2.2:80/ 2>&1; echo rc=$?"); err != nil || strings.Contains(r.Stdout, "rc=0") {
		t.Errorf("guest reached 10.0.2.2 (the host side of the user network): %q, %v", r.Stdout, err)
	}
}
