package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// TLSOptions say how a client trusts the server: by pinning the SHA-256
// fingerprint of its certificate (what a self-signed server prints at
// start), by a CA file, or, with neither, by the system's roots.
type TLSOptions struct {
	Fingerprint string // "sha256:<hex>"
	CAFile      string
}

// CipherSuites are the TLS 1.2 suites server and clients offer: ECDHE
// with an AEAD cipher only (no CBC, no SHA-1 MACs, no static RSA key
// exchange). TLS 1.3's suites are all AEAD and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig builds the client TLS configuration for o.
func TLSConfig(o TLSOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: CipherSuites}
	switch {
	case o.Fingerprint != "":
		want, err := parseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces name and chain checks: it names the one
		// certificate to accept, which also works when the agent reaches
		// the server by an address the certificate does not name (a VM's
		// forwarded port).
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !bytes.Equal(got[:], want) {
				return fmt.Errorf("server certificate fingerprint sha256:%x does not match the pinned %s", got, o.Fingerprint)
			}
			return nil
		}
	case o.CAFile != "":
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func parseFingerprint(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want sha256: and 64 hex digits, as stent-server prints", s)
	}
	return b, nil
}

// NewHTTPClient returns an HTTP client for talking to a server with o's
// trust. Each client keeps its own connections; an agent uses one
// connection for everything (its calls are sequential).
func NewHTTPClient(o TLSOptions) (*http.Client, error) {
	return NewHTTPClientFrom(o, nil)
}

// NewHTTPClientFrom is NewHTTPClient with a custom dialer (the fleet
// simulator spreads agents over loopback source addresses with it).
func NewHTTPClientFrom(o TLSOptions, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*http.Client, error) {
	cfg, err := TLSConfig(o)
	if err != nil {
		return nil, err
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tr := &http.Transport{
		DialContext:           dial,
		TLSClientConfig:       cfg,
		TLSHandshakeTimeout:   15 * time.Second,
		MaxIdleConns:          4,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       5 * time.Minute,
		ResponseHeaderTimeout: 0, // long-polls; callers bound each call with a context
		ForceAttemptHTTP2:     false,
	}
	return &http.Client{Transport: tr}, nil
}

// StatusError is a non-2xx answer from the server. Method and Path name
// the call (the API path and query, without the server's URL) for callers
// that add advice to the error; Error does not repeat them.
type StatusError struct {
	Status  int
	Code    string
	Message string
	Method  string
	Path    string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("server answered %d: %s", e.Status, e.Message)
}

// IsStatus reports whether err is a StatusError with the given status.
func IsStatus(err error, status int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == status
}

// Client calls a server's JSON API with a bearer token.
//
// BaseURL may name several servers, comma-separated: the instances of an
// active/standby pair. A call goes to the server that answered last; it
// moves on to the next one when a server cannot be connected to or
// answers 503 "standby" (CodeStandby). Other errors are returned as they
// are, since the request may have been processed; the next call then
// starts with the next server.
type Client struct {
	BaseURL string // https://host:port[,https://host2:port]
	Token   string
	HTTP    *http.Client
	Agent   string // User-Agent

	cur atomic.Int32 // index in BaseURL of the server to try first
}

// SplitServers returns the server URLs of a comma-separated list.
func SplitServers(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// send sends a request built by mk for each server in turn, as the Client
// comment says. A 503 standby answer of the last server is returned as a
// *StatusError, not as a response.
func (c *Client) send(ctx context.Context, method, path string, mk func(base string) (*http.Request, error)) (*http.Response, error) {
	urls := SplitServers(c.BaseURL)
	n := len(urls)
	first := int(c.cur.Load())
	var lastErr error
	for i := 0; i < n; i++ {
		k := (first + i) % n
		req, err := mk(urls[k])
		if err != nil {
			return nil, err
		}
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		if c.Agent != "" {
			req.Header.Set("User-Agent", c.Agent)
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			if n == 1 || ctx.Err() != nil {
				return nil, err
			}
			c.cur.Store(int32((k + 1) % n))
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Op == "dial" {
				lastErr = err // not sent: the next server may take it
				continue
			}
			return nil, err
		}
		if n > 1 && resp.StatusCode == http.StatusServiceUnavailable {
			err := readStatusError(resp, method, path)
			resp.Body.Close()
			var se *StatusError
			if errors.As(err, &se) && se.Code == CodeStandby {
				c.cur.Store(int32((k + 1) % n))
				lastErr = err
				continue
			}
			return nil, err
		}
		c.cur.Store(int32(k))
		return resp, nil
	}
	return nil, lastErr
}

// Do sends in (JSON, or raw bytes when it is a []byte) with method to path
// and decodes the answer into out when out is not nil.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	ctype := "application/json"
	switch v := in.(type) {
	case nil:
	case []byte:
		body, ctype = v, "application/octet-stream"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = b
	}
	resp, err := c.send(ctx, method, path, func(base string) (*http.Request, error) {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, r)
		if err == nil && body != nil {
			req.Header.Set("Content-Type", ctype)
		}
		return req, err
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readStatusError(resp, method, path)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func readStatusError(resp *http.Response, method, path string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := &StatusError{Status: resp.StatusCode, Method: method, Path: path}
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		se.Code, se.Message = e.Code, e.Error
	} else {
		se.Message = strings.TrimSpace(string(b))
	}
	return se
}

// Get is Do with GET and no body.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.Do(ctx, http.MethodGet, path, nil, out)
}

// Download GETs path and appends the body to w starting at offset (an HTTP
// Range request when offset > 0). It returns the bytes written; a server
// ignoring the range (200 instead of 206) is reported with restart == true
// and nothing written, so the caller can start over.
func (c *Client) Download(ctx context.Context, path string, offset int64, w io.Writer) (n int64, restart bool, err error) {
	resp, err := c.send(ctx, http.MethodGet, path, func(base string) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err == nil && offset > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		}
		return req, err
	})
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	switch {
	case offset > 0 && resp.StatusCode == http.StatusOK:
		return 0, true, nil
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return 0, true, nil
	case resp.StatusCode/100 != 2:
		return 0, false, readStatusError(resp, http.MethodGet, path)
	}
	n, err = io.Copy(w, resp.Body)
	return n, false, err
}

// Inventories reads the PathInventories stream and calls fn with each
// host's line as it arrives, so a fleet's inventories never sit in memory
// together; with a selector, only hosts with all its labels come. It
// returns how many hosts came, and stops at fn's first error. A stream
// that ends before its end line (the server failed or the connection
// broke midway) is an error wrapping io.ErrUnexpectedEOF.
func (c *Client) Inventories(ctx context.Context, selector map[string]string, fn func(*HostInventory) error) (int, error) {
	path := PathInventories
	if len(selector) > 0 {
		kvs := make([]string, 0, len(selector))
		for k, v := range selector {
			kvs = append(kvs, k+"="+v)
		}
		sort.Strings(kvs)
		path += "?" + url.Values{"label": kvs}.Encode()
	}
	// Errors name the collection, not the selector's query.
	resp, err := c.send(ctx, http.MethodGet, PathInventories, func(base string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, readStatusError(resp, http.MethodGet, PathInventories)
	}
	dec := json.NewDecoder(resp.Body)
	n := 0
	for {
		var h HostInventory
		if err := dec.Decode(&h); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("GET %s: stream cut short after %d hosts: %w", PathInventories, n, err)
		}
		if h.End != nil {
			if h.End.Hosts != n {
				return n, fmt.Errorf("GET %s: got %d hosts, the server says it sent %d", PathInventories, n, h.End.Hosts)
			}
			return n, nil
		}
		n++
		if err := fn(&h); err != nil {
			return n, err
		}
	}
}
