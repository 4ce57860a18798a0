package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/patcher"
)

// refusal is a final verdict on a bundle: it failed the hash or signature
// checks, or does not say what the server said it would. Reported as
// "refused" and never retried for that rollout.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

// notOnServer is a 404 for a bundle: the server has no such bundle or no
// longer serves it to this host (it left the host's desired state).
type notOnServer struct{ bundle string }

func (n *notOnServer) Error() string { return "bundle " + n.bundle + " is not on the server" }

// failure is a final failure of an action (the runtime said no).
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

// busy is a wait, not a verdict: the runtime did nothing because it is busy
// with something else (why). Retried for at most Config.BusyTimeout, then
// reported as failed.
type busy struct{ action, why string }

func (b *busy) Error() string { return b.action + ": " + b.why + "; waiting for it" }
func (b *busy) Unwrap() error { return ErrBusy }

// reconcile acts on every entry of d not acted on yet. It returns whether
// it changed the kernel's patches; an error means a retryable problem
// (server or disk), with the unfinished entries left for the next try.
func (a *Agent) reconcile(ctx context.Context, d api.DesiredState) (changed bool, err error) {
	want := map[string]bool{}
	for _, p := range d.Patches {
		key := opKey(p.Action, p.Rollout, p.Name)
		want[key] = true
		op := a.st.Ops[key]
		if op != nil && op.Done {
			continue
		}
		if op == nil {
			// Record the intent before acting, with the request id the
			// report will carry whatever happens next.
			op = &Op{RequestID: newRequestID(), Action: p.Action, Rollout: p.Rollout, Name: p.Name, Bundle: p.Bundle, Started: time.Now().UTC()}
			a.st.Ops[key] = op
			a.save()
		}
		var did bool
		var err error
		switch p.Action {
		case api.ActionApply:
			did, err = a.apply(ctx, p)
		case api.ActionRevert:
			did, err = a.revert(ctx, p)
		default:
			err = &failure{fmt.Sprintf("unknown action %q", p.Action)}
		}
		if bz := (*busy)(nil); errors.As(err, &bz) {
			if p.Action != api.ActionApply {
				// A revert waits for as long as it takes: reported failed,
				// it would never be tried again while the rollout reverts
				// (a failed entry is done), leaving the patch loaded once
				// the runtime is free, and a reverting rollout has no
				// failure threshold: it waits for the host either way.
				return changed, err
			}
			// Wait for the runtime (a person's stent apply, a transition),
			// but not for ever: a stalled transition nobody resolves would
			// hold the rollout's wave. Past the bound the failure threshold
			// decides, and an operator hears why.
			since, ok := a.busySince[key]
			if !ok {
				if a.busySince == nil {
					a.busySince = map[string]time.Time{}
				}
				since = time.Now() // with its monotonic reading: wall clock steps do not count
				a.busySince[key] = since
			}
			waited := time.Since(since)
			if waited < a.cfg.BusyTimeout {
				return changed, err
			}
			err = &failure{fmt.Sprintf("%s: the live patch runtime has been busy for %s (the agent's busy timeout is %s): %s",
				bz.action, roundWait(waited), a.cfg.BusyTimeout, bz.why)}
		}
		// Any other answer ends the wait: the next busy one starts it again.
		delete(a.busySince, key)
		result, msg := api.ResultOK, ""
		var rf *refusal
		var fl *failure
		var nf *notOnServer
		switch {
		case errors.As(err, &nf) && !a.missing[key]:
			// Resync before calling it a failure: the entry may be gone.
			if a.missing == nil {
				a.missing = map[string]bool{}
			}
			a.missing[key] = true
			return changed, err
		case errors.As(err, &nf):
			result, msg = api.ResultFailed, nf.Error()
		case err == nil:
		case errors.As(err, &rf):
			result, msg = api.ResultRefused, rf.msg
		case errors.As(err, &fl):
			result, msg = api.ResultFailed, fl.msg
		default:
			return changed, err
		}
		delete(a.missing, key)
		op.Done, op.Result, op.Error, op.Finished = true, result, msg, time.Now().UTC()
		a.met.action(p.Action, result)
		if result == api.ResultOK {
			a.log.Info(p.Action+" done", "patch", p.Name, "rollout", p.Rollout, "changed", did)
		} else {
			a.log.Warn(p.Action+" "+result, "patch", p.Name, "rollout", p.Rollout, "err", msg)
		}
		a.queueReport(api.Report{RequestID: op.RequestID, Action: p.Action, Rollout: p.Rollout, Name: p.Name, Bundle: p.Bundle,
			Result: result, Error: msg, At: op.Finished, BootID: a.st.BootID})
		changed = changed || did
	}
	// Forget finished actions the server no longer asks for, once reported.
	pending := map[string]bool{}
	for _, r := range a.st.Pending {
		pending[r.RequestID] = true
	}
	for k := range a.missing {
		if !want[k] {
			delete(a.missing, k)
		}
	}
	for k := range a.busySince {
		if !want[k] {
			delete(a.busySince, k)
		}
	}
	for k, op := range a.st.Ops {
		if !want[k] && op.Done && !pending[op.RequestID] {
			delete(a.st.Ops, k)
		}
	}
	a.save()
	return changed, nil
}

func (a *Agent) apply(ctx context.Context, p api.DesiredPatch) (bool, error) {
	rs, err := a.cfg.Runtime.Status(ctx)
	if err != nil {
		return false, fmt.Errorf("runtime status: %w", err)
	}
	if p.KernelRelease != "" && rs.KernelRelease != p.KernelRelease {
		return false, &failure{fmt.Sprintf("patch %s is for kernel %s; this host runs %s", p.Name, p.KernelRelease, rs.KernelRelease)}
	}
	if lp := findPatch(rs.Patches, p.Name); lp != nil && lp.Enabled && (lp.Level == 0 || lp.Level >= p.Level) {
		return false, nil // already applied (before a restart, or by hand): never load twice
	}
	path, err := a.download(ctx, p)
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read downloaded bundle: %w", err)
	}
	info, err := a.cfg.Verifier.Verify(data)
	if err != nil {
		os.Remove(path)
		return false, &refusal{"bundle " + p.Bundle + " refused: " + err.Error()}
	}
	if info.Name != p.Name || info.KernelRelease != p.KernelRelease || info.Level != p.Level {
		os.Remove(path)
		return false, &refusal{fmt.Sprintf("bundle %s is signed as %s level %d for %s; the server announced %s level %d for %s",
			p.Bundle, info.Name, info.Level, info.KernelRelease, p.Name, p.Level, p.KernelRelease)}
	}
	if tr := inTransition(rs.Patches, ""); tr != "" {
		// The kernel runs one transition at a time and the runtime refuses
		// while one is under way: wait for it, do not fail the rollout.
		return false, &busy{"apply " + p.Name, transitionBusy(tr)}
	}
	name, err := a.cfg.Runtime.Apply(ctx, path)
	if err != nil {
		return false, a.runtimeError(ctx, "apply "+p.Name, err)
	}
	if name != p.Name {
		a.log.Warn("runtime loaded a patch under another name", "want", p.Name, "got", name)
	}
	os.Remove(path)
	return true, nil
}

func (a *Agent) revert(ctx context.Context, p api.DesiredPatch) (bool, error) {
	rs, err := a.cfg.Runtime.Status(ctx)
	if err != nil {
		return false, fmt.Errorf("runtime status: %w", err)
	}
	if findPatch(rs.Patches, p.Name) == nil {
		return false, nil // not loaded: nothing to do
	}
	if tr := inTransition(rs.Patches, p.Name); tr != "" {
		return false, &busy{"revert " + p.Name, transitionBusy(tr)}
	}
	if err := a.cfg.Runtime.Revert(ctx, p.Name); err != nil {
		return false, a.runtimeError(ctx, "revert "+p.Name, err)
	}
	return true, nil
}

// runtimeError sorts an error from the runtime's Apply or Revert into what
// the agent does next:
//   - cancelled: interrupted, not failed; the next start looks again;
//   - busy (ErrBusy: another stent operation holds the host's lock), or
//     refused (patcher.ErrRefused) while another live patch is in
//     transition: a wait and not a verdict, retried up to BusyTimeout;
//   - refused otherwise (wrong kernel, bad signature, a patch of that name
//     already loaded): a refusal, reported as such;
//   - anything else, a stalled transition (*patcher.StallError) included:
//     a failure, with the runtime's own words.
func (a *Agent) runtimeError(ctx context.Context, action string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrBusy) {
		return &busy{action, strings.TrimPrefix(err.Error(), ErrBusy.Error()+": ")}
	}
	if errors.Is(err, patcher.ErrRefused) {
		if rs, serr := a.cfg.Runtime.Status(ctx); serr == nil {
			if tr := inTransition(rs.Patches, ""); tr != "" {
				return &busy{action, transitionBusy(tr)}
			}
		}
		return &refusal{action + ": " + err.Error()}
	}
	return &failure{action + ": " + err.Error()}
}

// roundWait rounds a wait for people: to the second from a minute up.
func roundWait(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// transitionBusy says why the runtime is busy while live patch name is in
// transition, and what a person can do about it.
func transitionBusy(name string) string {
	return fmt.Sprintf("live patch %s is in transition (the kernel runs one at a time; stent status on the host shows what blocks it, stent revert %s ends it)", name, name)
}

// inTransition names a live patch other than except whose transition is
// under way, or "".
func inTransition(ps []api.PatchState, except string) string {
	for _, p := range ps {
		if p.Transition && p.Name != except {
			return p.Name
		}
	}
	return ""
}

var reSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// download fetches the bundle into DownloadDir, resuming a partial file
// left by an earlier attempt, and checks its SHA-256. A mismatch after a
// resumed download is retried once from scratch; a mismatch on a whole
// download is a refusal.
func (a *Agent) download(ctx context.Context, p api.DesiredPatch) (string, error) {
	if !reSHA256.MatchString(p.Bundle) {
		return "", &refusal{fmt.Sprintf("bundle id %q is not a sha256", p.Bundle)}
	}
	if err := os.MkdirAll(a.cfg.DownloadDir, 0o700); err != nil {
		return "", fmt.Errorf("downloads folder: %w", err)
	}
	final := filepath.Join(a.cfg.DownloadDir, p.Bundle+".stb")
	part := final + ".part"
	if sum, err := fileSHA256(final); err == nil && sum == p.Bundle {
		return final, nil
	}
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return "", fmt.Errorf("download: %w", err)
		}
		off, _ := f.Seek(0, io.SeekEnd)
		if p.Size > 0 && off > p.Size {
			off = 0
			f.Truncate(0)
		}
		if off > 0 {
			a.met.resumed(off)
			a.log.Info("resuming download", "bundle", p.Bundle, "from", off)
		}
		var n int64
		var restart bool
		if p.Size == 0 || off < p.Size {
			// The server says how big the bundle is; it does not get to
			// fill this host's disk by sending more (or, with no size, more
			// than any bundle the runtime would load).
			limit := maxDownload - off
			if p.Size > 0 {
				limit = p.Size - off
			}
			n, restart, err = a.c.Download(ctx, api.PathBundles+p.Bundle, off, &limitWriter{w: f, left: limit})
		}
		a.met.downloaded(n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if restart {
			os.Remove(part)
			continue
		}
		if errors.Is(err, errTooLong) {
			os.Remove(part)
			what := fmt.Sprintf("the %d bytes announced", p.Size)
			if p.Size == 0 {
				what = fmt.Sprintf("%d bytes", maxDownload)
			}
			return "", &refusal{fmt.Sprintf("bundle %s: the server sent more than %s; refusing it", p.Bundle, what)}
		}
		if err != nil {
			if api.IsStatus(err, http.StatusNotFound) {
				return "", &notOnServer{p.Bundle}
			}
			return "", fmt.Errorf("download bundle %s: %w", p.Bundle, err)
		}
		sum, err := fileSHA256(part)
		if err != nil {
			return "", fmt.Errorf("download: %w", err)
		}
		if sum != p.Bundle {
			os.Remove(part)
			if off > 0 && attempt == 0 {
				continue // the part kept from before may be what is wrong
			}
			return "", &refusal{fmt.Sprintf("bundle %s: downloaded bytes hash to %s; refusing a bundle that is not what was published", p.Bundle, sum)}
		}
		if err := os.Rename(part, final); err != nil {
			return "", fmt.Errorf("download: %w", err)
		}
		return final, nil
	}
}

// maxDownload caps a bundle whose size the server did not announce: the
// runtime reads at most 256 MiB of a bundle anyway.
var maxDownload int64 = 256 << 20

var errTooLong = errors.New("download longer than announced")

// limitWriter passes on at most left bytes and fails after that.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > l.left {
		n, err := l.w.Write(b[:max(l.left, 0)])
		l.left -= int64(n)
		if err == nil {
			err = errTooLong
		}
		return n, err
	}
	n, err := l.w.Write(b)
	l.left -= int64(n)
	return n, err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// queueReport adds a report to the persistent outbox.
func (a *Agent) queueReport(r api.Report) {
	a.st.Pending = append(a.st.Pending, r)
	a.save()
}

// flushReports sends queued reports in order until one fails to reach the
// server. The server ignores a request id it has seen, so resending after
// a lost answer is safe.
func (a *Agent) flushReports(ctx context.Context) {
	if len(a.st.Pending) == 0 {
		return
	}
	sent := 0
	for _, r := range a.st.Pending {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := a.c.Do(cctx, http.MethodPost, api.PathReport, r, &api.ReportResponse{})
		cancel()
		var se *api.StatusError
		if err != nil && errors.As(err, &se) && se.Status/100 == 4 && se.Status != http.StatusUnauthorized && se.Status != http.StatusTooManyRequests {
			a.log.Error("server rejected a report; dropping it", "request_id", r.RequestID, "err", err)
			err = nil
		}
		if err != nil {
			break
		}
		sent++
	}
	if sent > 0 {
		a.st.Pending = append([]api.Report(nil), a.st.Pending[sent:]...)
		a.save()
	}
}
