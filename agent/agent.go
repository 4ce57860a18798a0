// Package agent is the stent agent daemon: it enrolls a host with a
// stent-server, reports the host's live patch state, learns about new
// desired state through a long-poll the server answers the moment it
// changes, and applies or reverts patches through the host runtime after
// checking every bundle's hash and signature against its own trusted keys.
//
// The agent is written against two small interfaces, Runtime and Verifier,
// so that the same code drives a real host (PatcherRuntime) and thousands
// of simulated ones (internal/fleetsim).
package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/version"
)

// Version is reported to the server: the build's version (stent --version).
var Version = version.String()

// Runtime is what the agent needs from the host's live patch runtime.
type Runtime interface {
	// Status reports the running kernel and its live patches.
	Status(ctx context.Context) (*RuntimeStatus, error)
	// Apply loads the (already verified) bundle at path and returns the
	// name of the patch it loaded.
	Apply(ctx context.Context, path string) (string, error)
	// Revert disables and unloads the named patch.
	Revert(ctx context.Context, name string) error
}

// ErrBusy is wrapped by a Runtime's Apply or Revert error when it did
// nothing because the host's runtime is busy with something else (another
// stent operation holds the host's lock): a wait, not a verdict. The agent
// tries again with its backoff (an apply for at most Config.BusyTimeout).
var ErrBusy = errors.New("live patch runtime busy")

// RuntimeStatus is the host state an agent reports.
type RuntimeStatus struct {
	KernelRelease string
	BuildID       string
	BootID        string
	Patches       []api.PatchState
}

// Verifier checks a bundle's signature against the agent's trusted keys
// and returns what the signed manifest says.
type Verifier interface {
	Verify(data []byte) (*api.BundleInfo, error)
}

// Config configures an Agent.
type Config struct {
	Runtime  Runtime
	Verifier Verifier
	State    StateStore // default: FileState in Dir
	// Dir holds the agent's state and downloads (with the credentials).
	Dir string
	// DownloadDir holds bundles being downloaded; default Dir/downloads.
	DownloadDir string
	HTTPClient  *http.Client // default: built from the credentials' TLS options
	Log         *slog.Logger
	Metrics     *Metrics // nil: no metrics
	Hostname    string   // default os.Hostname
	// Inventory, when set, is reported to the server whenever it changes.
	Inventory func(ctx context.Context) (json.RawMessage, error)
	// HealthDelay is how long after applying the agent waits before it
	// checks health and checks in, which the rollout waits for. Default 10s.
	HealthDelay time.Duration
	// Spread delays acting on a new desired state by a random time up to
	// this, so a whole wave does not download in the same millisecond.
	Spread time.Duration
	// MaxBackoff caps the wait between retries when the server is
	// unreachable. Default 60s.
	MaxBackoff time.Duration
	// Interval is the check-in interval to use until the server names one.
	Interval time.Duration
	// BusyTimeout bounds how long the agent waits for a busy runtime
	// (another stent operation holds the host's lock, or another live patch
	// is in transition) before it reports an apply failed, so that the
	// rollout's failure threshold decides instead of a wave waiting for
	// ever. It is measured per desired apply, on the monotonic clock, from
	// the first busy answer; an agent restart starts it again. Default 10m.
	// Reverts wait without a bound: a failed revert is not tried again, so
	// the patch would stay loaded, and a reverting rollout waits anyway.
	BusyTimeout time.Duration
	// HealthCheck, when set, decides the health reported at each check-in
	// (a site's own probe). The default checks the live patches' states.
	HealthCheck func(ctx context.Context, rs *RuntimeStatus) (health, detail string)
	// Kernel, when set, lets the server update the host's kernel and reboot
	// it (see kernel.go); nil: the agent manages live patches only.
	Kernel KernelManager
	// Hooks are the operator's pre- and post-reboot hooks and reboot
	// blockers.
	Hooks Hooks
}

// DefaultBusyTimeout is Config.BusyTimeout's default.
const DefaultBusyTimeout = 10 * time.Minute

// Agent is one running agent.
type Agent struct {
	cfg      Config
	creds    *Credentials
	c        *api.Client
	log      *slog.Logger
	met      *Metrics
	st       *State
	interval time.Duration
	invHash  string // hash of the inventory the server last accepted
	lastSync time.Time
	// missing holds the ops whose bundle download got a 404: the server
	// serves a host only the bundles of its current desired state, so a
	// 404 is first taken to mean that state moved on (paused, reverted,
	// superseded) and is a failure only if a fresh sync still asks for it.
	missing map[string]bool
	// busySince holds, per op, when the runtime first answered busy to it
	// (with the monotonic reading time.Now carries); see Config.BusyTimeout.
	busySince map[string]time.Time

	bootID         string             // the running boot's id
	kernelNext     time.Time          // when kernelStep wants to run again
	leaseWait      string             // why the server did not grant a reboot lease
	kernelBlockers []string           // what stops a reboot on this host's side
	knownGoodTried bool               // the running kernel was offered as known-good
	kernelSeen     *api.KernelCheckin // the kernel situation last read
	kernelSeenAt   time.Time
	installing     *kernelInstall // a kernel install running in the background
	// wake cuts a check-in's long poll short when background work ends.
	wake chan struct{}
}

// New returns an agent for an enrolled host.
func New(cfg Config, creds *Credentials) (*Agent, error) {
	if cfg.Runtime == nil || cfg.Verifier == nil {
		return nil, errors.New("agent: a Runtime and a Verifier are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.State == nil {
		cfg.State = FileState{Path: filepath.Join(cfg.Dir, "state.json")}
	}
	if cfg.DownloadDir == "" {
		cfg.DownloadDir = filepath.Join(cfg.Dir, "downloads")
	}
	if cfg.HealthDelay == 0 {
		cfg.HealthDelay = 10 * time.Second
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = DefaultBusyTimeout
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 60 * time.Second
	}
	if cfg.Interval == 0 {
		cfg.Interval = 60 * time.Second
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.HTTPClient == nil {
		hc, err := api.NewHTTPClient(creds.TLS())
		if err != nil {
			return nil, err
		}
		cfg.HTTPClient = hc
	}
	a := &Agent{
		cfg: cfg, creds: creds, log: cfg.Log, met: cfg.Metrics, interval: cfg.Interval,
		c:    &api.Client{BaseURL: creds.Server, Token: creds.Credential, HTTP: cfg.HTTPClient, Agent: "stent-agent/" + Version},
		wake: make(chan struct{}, 1),
	}
	return a, nil
}

// Run runs the agent until ctx is cancelled. It returns nil on
// cancellation; it does not give up when the server is unreachable.
func (a *Agent) Run(ctx context.Context) error {
	st, err := a.cfg.State.Load()
	if err != nil {
		return err
	}
	a.st = st
	if rs, err := a.cfg.Runtime.Status(ctx); err == nil && rs.BootID != "" {
		a.bootID = rs.BootID
		if st.BootID != "" && st.BootID != rs.BootID {
			a.queueReport(api.Report{RequestID: newRequestID(), Action: api.ActionReboot, Result: api.ResultOK, At: time.Now().UTC(), BootID: rs.BootID})
		}
		if st.BootID != rs.BootID {
			st.BootID = rs.BootID
			a.save()
		}
	}
	etag := "" // the desired state fully acted on; "" makes the first sync return at once
	failures := 0
	for ctx.Err() == nil {
		a.flushReports(ctx)
		wait := a.interval
		if !a.kernelNext.IsZero() {
			wait = max(min(wait, time.Until(a.kernelNext)), time.Second)
		}
		if etag == "" {
			wait = 0
		}
		resp, err := a.syncWakeable(ctx, etag, wait)
		if errors.Is(err, errWoken) {
			// Background work ended (a kernel install): go on with it at
			// the next check-in, in a second, not at the next interval.
			a.kernelNext = time.Now()
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			d := backoff(failures, a.cfg.MaxBackoff)
			a.log.Warn("sync failed; retrying", "err", err, "in", d.Round(time.Millisecond))
			if api.IsStatus(err, http.StatusUnauthorized) {
				a.log.Error("the server refuses this host's credential (revoked?); enroll again with --enroll")
			}
			sleep(ctx, d)
			continue
		}
		failures = 0
		if d := time.Duration(resp.CheckinInterval); d > 0 {
			a.interval = d
		}
		if resp.Desired.ETag == etag {
			a.kernelNext = a.kernelStep(ctx, resp.Desired.Kernel)
			continue
		}
		if a.cfg.Spread > 0 && etag != "" {
			sleep(ctx, time.Duration(mrand.Int64N(int64(a.cfg.Spread))))
		}
		changed, err := a.reconcile(ctx, resp.Desired)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			d := backoff(failures, a.cfg.MaxBackoff)
			a.log.Warn("acting on desired state failed; retrying", "err", err, "in", d.Round(time.Millisecond))
			etag = ""
			sleep(ctx, d)
			continue
		}
		etag = resp.Desired.ETag
		a.flushReports(ctx)
		a.kernelNext = a.kernelStep(ctx, resp.Desired.Kernel)
		a.flushReports(ctx)
		if changed {
			// Let the patch settle, then check in: the rollout waits for
			// this healthy check-in before it releases the next wave.
			sleep(ctx, a.cfg.HealthDelay)
			etag = ""
		}
	}
	// No final flush: reports wait in the state for the next start, as
	// they would after a kill. An install under way was cancelled with ctx:
	// wait until the package manager has stopped.
	if a.installing != nil {
		<-a.installing.done
	}
	return nil
}

// errWoken is syncWakeable's error when background work ended during the
// long poll.
var errWoken = errors.New("woken")

// wakeUp cuts the current long poll short (or the next one, if none runs).
func (a *Agent) wakeUp() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// syncWakeable is sync, returned early with errWoken by wakeUp.
func (a *Agent) syncWakeable(ctx context.Context, etag string, wait time.Duration) (*api.SyncResponse, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	woken := make(chan bool, 1)
	go func() {
		select {
		case <-a.wake:
			if sctx.Err() != nil {
				a.wakeUp() // this sync ended anyway: keep the wake for the next
				woken <- false
				return
			}
			cancel()
			woken <- true
		case <-sctx.Done():
			woken <- false
		}
	}()
	resp, err := a.sync(sctx, etag, wait)
	cancel()
	if <-woken && ctx.Err() == nil && err != nil {
		return nil, errWoken
	}
	return resp, err
}

// sync checks in and long-polls for a desired state other than etag.
func (a *Agent) sync(ctx context.Context, etag string, wait time.Duration) (*api.SyncResponse, error) {
	c, err := a.checkin(ctx)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
		q.Set("etag", etag)
	}
	// The server holds at most wait; allow for it plus a slow network.
	cctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	var resp api.SyncResponse
	path := api.PathSync
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err = a.c.Do(cctx, http.MethodPost, path, c, &resp)
	if ctx.Err() == nil {
		a.met.sync(err)
	}
	if err != nil {
		return nil, err
	}
	if len(c.Inventory) > 0 {
		a.invHash = hashBytes(c.Inventory)
	}
	a.lastSync = time.Now()
	return &resp, nil
}

// checkin builds the check-in: runtime state, health, inventory if new.
func (a *Agent) checkin(ctx context.Context) (*api.Checkin, error) {
	rs, err := a.cfg.Runtime.Status(ctx)
	c := &api.Checkin{Hostname: a.cfg.Hostname, AgentVersion: Version, Patches: []api.PatchState{}}
	if err != nil {
		// Still check in: the server should hear that the runtime is broken.
		c.Health, c.HealthDetail = api.HealthDegraded, "runtime status: "+err.Error()
	} else {
		c.KernelRelease, c.BuildID, c.BootID, c.Patches = rs.KernelRelease, rs.BuildID, rs.BootID, rs.Patches
		c.Health, c.HealthDetail = a.health(ctx, rs)
	}
	a.met.patches(c.Patches)
	c.Kernel = a.kernelCheckin(ctx)
	if a.cfg.Inventory != nil {
		if inv, err := a.cfg.Inventory(ctx); err == nil && len(inv) > 0 && hashBytes(inv) != a.invHash {
			c.Inventory = inv
		} else if err != nil {
			a.log.Warn("inventory", "err", err)
		}
	}
	return c, nil
}

// health is Config.HealthCheck's verdict when set; otherwise degraded when
// a live patch is loaded but disabled, which is no state to leave a host in.
func (a *Agent) health(ctx context.Context, rs *RuntimeStatus) (string, string) {
	if a.cfg.HealthCheck != nil {
		return a.cfg.HealthCheck(ctx, rs)
	}
	for _, p := range rs.Patches {
		if !p.Enabled && !p.Transition {
			return api.HealthDegraded, "live patch " + p.Name + " is loaded but disabled"
		}
	}
	return api.HealthOK, ""
}

func findPatch(ps []api.PatchState, name string) *api.PatchState {
	for i := range ps {
		if ps[i].Name == name {
			return &ps[i]
		}
	}
	return nil
}

func (a *Agent) save() {
	if err := a.cfg.State.Save(a.st); err != nil {
		a.log.Error("save agent state", "err", err)
	}
}

// backoff is exponential from 1s up to max, with jitter: half fixed, half
// random, so a fleet cut off together does not come back together.
func backoff(failures int, maxD time.Duration) time.Duration {
	d := time.Second << min(failures-1, 16)
	if d > maxD || d <= 0 {
		d = maxD
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Enroll exchanges an enrollment token for the host's credentials.
func Enroll(ctx context.Context, hc *http.Client, server string, tlsOpt api.TLSOptions, token, hostname, machineID string, labels map[string]string) (*Credentials, error) {
	return EnrollWith(ctx, hc, server, tlsOpt, api.EnrollRequest{Token: token, Hostname: hostname, MachineID: machineID, Labels: labels})
}

// EnrollWith is Enroll with the whole request, such as the credential of
// the host it replaces (api.EnrollRequest.Replaces).
func EnrollWith(ctx context.Context, hc *http.Client, server string, tlsOpt api.TLSOptions, req api.EnrollRequest) (*Credentials, error) {
	if hc == nil {
		var err error
		if hc, err = api.NewHTTPClient(tlsOpt); err != nil {
			return nil, err
		}
	}
	c := &api.Client{BaseURL: server, HTTP: hc, Agent: "stent-agent/" + Version}
	var resp api.EnrollResponse
	err := c.Do(ctx, http.MethodPost, api.PathEnroll, req, &resp)
	if api.IsStatus(err, http.StatusUnauthorized) && req.Replaces == "" {
		return nil, fmt.Errorf("enroll with %s: the enrollment token is unknown, expired, revoked or used up; ask for a new one", server)
	}
	if err != nil {
		return nil, fmt.Errorf("enroll with %s: %w", server, err)
	}
	return &Credentials{Server: server, HostID: resp.HostID, Credential: resp.Credential, Fingerprint: tlsOpt.Fingerprint,
		CAFile: tlsOpt.CAFile, Channel: resp.Channel, Labels: resp.Labels, EnrolledAt: time.Now().UTC()}, nil
}
