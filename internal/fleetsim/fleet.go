package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
)

// Config describes a simulated fleet.
type Config struct {
	Server      string // https://127.0.0.1:PORT
	Fingerprint string // the server's certificate pin
	EnrollToken string
	N           int
	Kernel      string          // kernel every host runs
	Keys        *bundle.Keyring // the agents' trusted keys
	Dir         string          // downloads, one folder per host
	Log         *slog.Logger
	// Labels returns host i's labels (nil: none). Labels come from the
	// enrollment token, so with Labels set, TokenFor must make a token
	// for each distinct set (EnrollToken is used for hosts without).
	Labels func(i int) map[string]string
	// TokenFor returns an enrollment token that sets labels; it is called
	// once per distinct set.
	TokenFor func(labels map[string]string) (string, error)
	// Inventory returns host i's inventory, the JSON of "stent inventory
	// --json", which its agent reports (nil func or value: none).
	Inventory func(i int) json.RawMessage
	// Agent settings passed through to agent.Config.
	HealthDelay time.Duration
	Spread      time.Duration
	MaxBackoff  time.Duration
	ApplyDelay  time.Duration
	BusyTimeout time.Duration
	// SpreadSources binds each host's connection to its own 127.x.y.z
	// source address, so 10,000 hosts do not share one address's ports.
	SpreadSources bool
	// Concurrency bounds parallel enrollments; default 64.
	Concurrency int
}

// Host is one simulated host.
type Host struct {
	Index   int
	Name    string
	Creds   *agent.Credentials
	Runtime *Runtime
	State   *agent.MemState
	client  *http.Client

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Fleet is a set of simulated hosts.
type Fleet struct {
	cfg   Config
	Hosts []*Host
}

// Config returns the fleet's configuration.
func (f *Fleet) Config() Config { return f.cfg }

// Enroll creates the fleet's hosts and enrolls each with the server.
func Enroll(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, Hosts: make([]*Host, cfg.N)}
	tokens := map[string]string{}
	for i := 0; i < cfg.N && cfg.Labels != nil; i++ {
		labels := cfg.Labels(i)
		key := fmt.Sprint(labels) // fmt sorts map keys
		if _, ok := tokens[key]; ok || len(labels) == 0 {
			continue
		}
		if cfg.TokenFor == nil {
			return nil, fmt.Errorf("host %d has labels %v: set TokenFor (labels come from the enrollment token)", i, labels)
		}
		tok, err := cfg.TokenFor(labels)
		if err != nil {
			return nil, fmt.Errorf("enrollment token for labels %v: %w", labels, err)
		}
		tokens[key] = tok
	}
	sem := make(chan struct{}, cfg.Concurrency)
	errc := make(chan error, cfg.N)
	var wg sync.WaitGroup
	for i := 0; i < cfg.N; i++ {
		h := &Host{Index: i, Name: fmt.Sprintf("sim-%05d", i), Runtime: NewRuntime(cfg.Kernel), State: &agent.MemState{}}
		h.Runtime.SetApplyDelay(cfg.ApplyDelay)
		hc, err := api.NewHTTPClientFrom(api.TLSOptions{Fingerprint: cfg.Fingerprint}, f.dialer(i))
		if err != nil {
			return nil, err
		}
		h.client = hc
		f.Hosts[i] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var labels map[string]string
			if cfg.Labels != nil {
				labels = cfg.Labels(i)
			}
			tok := cfg.EnrollToken
			if len(labels) > 0 {
				tok = tokens[fmt.Sprint(labels)]
			}
			var err error
			for attempt := 0; attempt < 5; attempt++ {
				h.Creds, err = agent.Enroll(ctx, hc, cfg.Server, api.TLSOptions{Fingerprint: cfg.Fingerprint}, tok, h.Name, "sim-machine-"+h.Name, labels)
				if err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
			}
			if err != nil {
				errc <- fmt.Errorf("enroll %s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	return f, nil
}

// dialer returns host i's dial function: its own loopback source address
// when SpreadSources is set and the server is on loopback.
func (f *Fleet) dialer(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if f.cfg.SpreadSources {
		if u, err := url.Parse(f.cfg.Server); err == nil {
			if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
				d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 1, byte(i/250), byte(i%250+1))}
			}
		}
	}
	return d.DialContext
}

// Start runs every host's agent.
func (f *Fleet) Start(ctx context.Context) {
	for _, h := range f.Hosts {
		f.StartHost(ctx, h)
	}
}

// StartHost runs one host's agent (again, after StopHost).
func (f *Fleet) StartHost(ctx context.Context, h *Host) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel != nil {
		return
	}
	if h.done != nil {
		<-h.done // a stop another caller began: never two agents on one host
	}
	actx, cancel := context.WithCancel(ctx)
	h.cancel, h.done = cancel, make(chan struct{})
	var inv func(context.Context) (json.RawMessage, error)
	if f.cfg.Inventory != nil {
		if v := f.cfg.Inventory(h.Index); len(v) > 0 {
			inv = func(context.Context) (json.RawMessage, error) { return v, nil }
		}
	}
	a, err := agent.New(agent.Config{
		Runtime:     h.Runtime,
		Verifier:    agent.KeyringVerifier{Keys: f.cfg.Keys},
		State:       h.State,
		Dir:         filepath.Join(f.cfg.Dir, h.Name),
		HTTPClient:  h.client,
		Log:         f.cfg.Log.With("host", h.Name),
		Hostname:    h.Name,
		HealthDelay: f.cfg.HealthDelay,
		Spread:      f.cfg.Spread,
		MaxBackoff:  f.cfg.MaxBackoff,
		BusyTimeout: f.cfg.BusyTimeout,
		Inventory:   inv,
	}, h.Creds)
	if err != nil {
		panic(err) // only on a programming error: Runtime and Verifier are set
	}
	done := h.done
	go func() {
		defer close(done)
		a.Run(actx)
	}()
}

// StopHost stops one host's agent, as if it were killed: state kept in
// memory is what a killed agent would have left on disk. It returns once
// the agent has stopped, also when another StopHost began the stop.
func (f *Fleet) StopHost(h *Host) {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel = nil
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
}

// Stop stops every agent.
func (f *Fleet) Stop() {
	var wg sync.WaitGroup
	for _, h := range f.Hosts {
		wg.Add(1)
		go func() { defer wg.Done(); f.StopHost(h) }()
	}
	wg.Wait()
	for _, h := range f.Hosts {
		h.client.CloseIdleConnections()
	}
}

// TokenMaker returns a Config.TokenFor that makes enrollment tokens for
// channel through an operator's admin client.
func TokenMaker(ctx context.Context, admin *api.Client, channel string) func(map[string]string) (string, error) {
	return func(labels map[string]string) (string, error) {
		tok, err := admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "fleetsim", Channel: channel, Labels: labels})
		if err != nil {
			return "", err
		}
		return tok.Secret, nil
	}
}
