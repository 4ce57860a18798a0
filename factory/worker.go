package factory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/policy"
)

// Client is what a worker needs of the server's admin API (api.Client).
type Client interface {
	PutFactoryUpload(ctx context.Context, u api.FactoryUpload) (*api.FactoryUpload, error)
	PutFactoryJob(ctx context.Context, j api.FactoryJob) (*api.FactoryJob, error)
	Inventories(ctx context.Context, selector map[string]string, fn func(*api.HostInventory) error) (int, error)
	Bundles(ctx context.Context) ([]api.BundleInfo, error)
	Download(ctx context.Context, path string, offset int64, w io.Writer) (n int64, restart bool, err error)
	PublishBundle(ctx context.Context, data []byte) (*api.BundleInfo, error)
	CreateRollout(ctx context.Context, req api.RolloutRequest) (*api.Rollout, error)
	Policy(ctx context.Context, version int) (*api.PolicyStatus, error)
}

// Worker turns one upload into a cumulative live patch per kernel build
// the fleet runs: stent factory run.
type Worker struct {
	Client Client
	// Key is the factory's signing key, apart from the operators' keys;
	// hosts trust its public half. Its id is in each job and audit entry.
	Key ed25519.PrivateKey
	// Channel is the channel the rollout goes to; default "canary".
	Channel string
	// Options are Extract's (cache, git repository, CNA records, progress).
	Options Options
	// Smoke tests a built bundle on its exact kernel (see Smoke); nil
	// skips the test, which each job then says (SmokeSkipped).
	Smoke func(ctx context.Context, kernel string, bundle []byte) error
	// Build is build.Build; Extract is Extract (tests replace them).
	Build   func(ctx context.Context, opts build.Options) (*build.Result, error)
	Extract func(ctx context.Context, from, to string, opts Options) (*Upload, error)
	// Parallel is how many kernel builds of one upload are worked on at
	// once (each its fixes, build, smoke test, publish and rollout);
	// default DefaultParallel. Each build compiles a few objects one at a
	// time and each smoke test is a one-CPU guest, so two at once keep two
	// cores busy where one after the other leaves one idle.
	Parallel int
}

// DefaultParallel is Worker.Parallel's default: two kernel builds at once,
// or one on a one-CPU machine.
var DefaultParallel = min(2, runtime.NumCPU())

// SmokeSkipped is the step name a job gets when Worker.Smoke is nil.
const SmokeSkipped = "smoke-skipped"

// Report is what one Run did.
type Report struct {
	Upload *api.FactoryUpload `json:"upload"`
	Jobs   []api.FactoryJob   `json:"jobs"`
	// Skipped are the kernel builds another worker holds or that are at
	// the upload already, with why.
	Skipped []string `json:"skipped,omitempty"`
}

// kernelBuild is one kernel build the fleet runs.
type kernelBuild struct {
	release, version string // "6.1.0-56-amd64", package version "6.1.192-2"
	hosts            int
}

var debianRelease = regexp.MustCompile(`^\d+\.\d+\.\d+-\d+-[a-z0-9-]+$`)

// Run records upload `to` (over `from`, the upload before it) on the server
// and makes, for every kernel build of the series the server's inventories
// show running at an older upload, one cumulative live patch of every fix
// between that build and `to`. A kernel whose fixes do not apply or whose
// build fails is reported in its job and the others go on; Run's error is
// for what stops everything (the server, the upload's own fixes).
func (w *Worker) Run(ctx context.Context, from, to string) (*Report, error) {
	if w.Key == nil {
		return nil, errors.New("factory run: no signing key (--key: the factory's own, which hosts trust)")
	}
	if w.Build == nil {
		w.Build = build.Build
	}
	if w.Extract == nil {
		w.Extract = Extract
	}
	if w.Channel == "" {
		w.Channel = "canary"
	}
	extract := w.memoExtract(ctx, to)
	rep := &Report{}
	up, upErr := extract(from, w.Options.Progress)
	rec := api.FactoryUpload{Version: to, Previous: from}
	if upErr != nil {
		rec.Error = upErr.Error()
	} else {
		rec = apiUpload(up)
	}
	saved, err := w.Client.PutFactoryUpload(ctx, rec)
	if err != nil {
		return nil, fmt.Errorf("record upload %s on the server: %w", to, err)
	}
	rep.Upload = saved
	if upErr != nil {
		return rep, upErr
	}

	kernels, err := w.fleetKernels(ctx, to)
	if err != nil {
		return rep, err
	}
	var todo []kernelBuild
	for _, k := range kernels {
		if cmpDeb(k.version, to) >= 0 {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: at %s already", k.release, k.version))
			continue
		}
		todo = append(todo, k)
	}
	jobs, skipped, err := w.jobs(ctx, todo, to, extract)
	rep.Jobs = append(rep.Jobs, jobs...)
	rep.Skipped = append(rep.Skipped, skipped...)
	return rep, err
}

// jobs runs the job of each kernel build, Worker.Parallel at a time, and
// returns them in the order of kernels: the jobs done, the kernel builds
// another worker holds (a 409 on the claim), and the first of the server's
// errors. After such an error no more jobs start; the running ones finish.
func (w *Worker) jobs(ctx context.Context, kernels []kernelBuild, to string, extract extractFunc) ([]api.FactoryJob, []string, error) {
	n := w.Parallel
	if n <= 0 {
		n = DefaultParallel
	}
	n = max(1, min(n, len(kernels)))
	progress := w.Options.Progress
	if progress == nil {
		progress = io.Discard
	}
	if n > 1 {
		progress = &syncWriter{w: progress}
	}
	type result struct {
		job     *api.FactoryJob
		skipped string
		err     error
		done    bool
	}
	results := make([]result, len(kernels))
	var (
		mu      sync.Mutex
		stopped bool
		wg      sync.WaitGroup
	)
	slots := make(chan struct{}, n)
	for i, k := range kernels {
		slots <- struct{}{}
		mu.Lock()
		stop := stopped
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-slots
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			out := progress
			if n > 1 {
				pw := &prefixWriter{w: progress, prefix: k.release + ": "}
				defer pw.Flush()
				out = pw
			}
			fmt.Fprintf(out, "factory: kernel %s (%s, %d hosts)\n", k.release, k.version, k.hosts)
			j, err := w.job(ctx, k, to, extract, out)
			r := result{job: j, err: err, done: true}
			if api.IsStatus(err, http.StatusConflict) {
				r = result{skipped: fmt.Sprintf("%s: %v", k.release, err), done: true}
			} else if err != nil {
				mu.Lock()
				stopped = true
				mu.Unlock()
			}
			results[i] = r
		}()
	}
	wg.Wait()
	var (
		jobs    []api.FactoryJob
		skipped []string
		first   error
	)
	for _, r := range results {
		switch {
		case !r.done:
		case r.skipped != "":
			skipped = append(skipped, r.skipped)
		case r.err != nil:
			if first == nil {
				first = r.err
			}
		default:
			jobs = append(jobs, *r.job)
		}
	}
	if first == nil && ctx.Err() != nil && len(jobs)+len(skipped) < len(kernels) {
		first = ctx.Err()
	}
	return jobs, skipped, first
}

// extractFunc returns the fixes between from and the upload being worked
// on, writing its progress to the given writer.
type extractFunc func(from string, progress io.Writer) (*Upload, error)

// memoExtract returns Worker.Extract for upload to, run at most once per
// earlier upload even when several jobs ask at once (kernel builds at the
// same package version share their fixes).
func (w *Worker) memoExtract(ctx context.Context, to string) extractFunc {
	type entry struct {
		done chan struct{}
		up   *Upload
		err  error
	}
	var mu sync.Mutex
	memo := map[string]*entry{}
	return func(from string, progress io.Writer) (*Upload, error) {
		mu.Lock()
		e, ok := memo[from]
		if !ok {
			e = &entry{done: make(chan struct{})}
			memo[from] = e
		}
		mu.Unlock()
		if ok {
			select {
			case <-e.done:
				return e.up, e.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		opts := w.Options
		opts.Progress = progress
		e.up, e.err = w.Extract(ctx, from, to, opts)
		close(e.done)
		return e.up, e.err
	}
}

// fleetKernels returns the Debian kernel builds of to's series the
// server's inventories show running, with their package versions.
func (w *Worker) fleetKernels(ctx context.Context, to string) ([]kernelBuild, error) {
	series := strings.Join(strings.SplitN(to, ".", 3)[:2], ".") + "."
	byRelease := map[string]*kernelBuild{}
	_, err := w.Client.Inventories(ctx, nil, func(h *api.HostInventory) error {
		if len(h.Inventory) == 0 {
			return nil
		}
		inv, err := inventory.Decode("inventory of "+h.HostID, bytes.NewReader(h.Inventory))
		if err != nil {
			return nil // the planner reports unreadable inventories
		}
		k := inv.Kernel
		if !debianRelease.MatchString(k.Release) || !strings.HasPrefix(k.PackageVersion, series) {
			return nil
		}
		kb := byRelease[k.Release]
		if kb == nil {
			kb = &kernelBuild{release: k.Release, version: k.PackageVersion}
			byRelease[k.Release] = kb
		}
		kb.hosts++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the fleet's inventories: %w", err)
	}
	var out []kernelBuild
	for _, kb := range byRelease {
		out = append(out, *kb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].release < out[j].release })
	return out, nil
}

// job builds, tests, publishes and rolls out the live patch of one kernel
// build. Its error is the server's (a claim another worker holds, or the
// server gone); everything else ends up in the job.
func (w *Worker) job(ctx context.Context, k kernelBuild, to string, extract extractFunc, progress io.Writer) (*api.FactoryJob, error) {
	j := api.FactoryJob{ID: to + "/" + k.release, Upload: to, Kernel: k.release, Hosts: k.hosts, State: api.JobBuilding}
	put := func() error {
		saved, err := w.Client.PutFactoryJob(ctx, j)
		if err != nil {
			return err
		}
		j = *saved
		return nil
	}
	if err := put(); err != nil {
		return nil, err
	}
	step := func(name string, start time.Time) {
		j.Steps = append(j.Steps, api.FactoryStep{Name: name, Duration: time.Since(start)})
	}
	fail := func(state string, err error) (*api.FactoryJob, error) {
		j.State = state
		if err != nil {
			j.Error = err.Error()
		}
		return &j, put()
	}

	start := time.Now()
	up, err := extract(k.version, progress)
	step("fixes", start)
	if err != nil {
		return fail(api.JobFailed, fmt.Errorf("fixes from %s to %s: %w", k.version, to, err))
	}
	if len(up.Fixes) == 0 {
		return fail(api.JobFailed, fmt.Errorf("no source fix between %s and %s", k.version, to))
	}

	start = time.Now()
	old, err := w.deployed(ctx, k.release)
	step("cumulative", start)
	if err != nil {
		return fail(api.JobFailed, err)
	}
	if old != nil {
		j.Cumulative = old.SHA256
	}

	dir, err := os.MkdirTemp("", "stent-factory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	start = time.Now()
	res, fixes, refused, err := w.buildKernel(ctx, dir, k, to, up.Fixes, old, progress)
	step("build", start)
	j.Refused = refused
	for _, f := range fixes {
		j.Fixes = append(j.Fixes, f.Index)
		j.CVEs = append(j.CVEs, f.CVEs...)
	}
	if err != nil {
		return fail(api.JobFailed, err)
	}
	if res == nil {
		return fail(api.JobRefused, nil)
	}
	j.Name, j.Level, j.KeyID = res.Manifest.Name, res.Manifest.Level, res.KeyID.String()

	start = time.Now()
	if w.Smoke == nil {
		step(SmokeSkipped, start)
	} else {
		err := w.Smoke(ctx, k.release, res.Bundle)
		step("smoke", start)
		if err != nil {
			return fail(api.JobFailed, fmt.Errorf("smoke test on %s: %w (the bundle was not published)", k.release, err))
		}
		j.State = api.JobSmokeTested
		if err := put(); err != nil {
			return nil, err
		}
	}

	start = time.Now()
	info, err := w.Client.PublishBundle(ctx, res.Bundle)
	step("publish", start)
	if err != nil {
		return fail(api.JobFailed, fmt.Errorf("publish: %w", err))
	}
	j.State, j.Bundle = api.JobPublished, info.SHA256
	if err := put(); err != nil {
		return nil, err
	}

	start = time.Now()
	auto, err := w.unattended(ctx)
	if err != nil {
		j.Waiting = fmt.Sprintf("could not read the server's policy (%v): roll out by hand", err)
		return &j, put()
	}
	if !auto {
		j.Waiting = fmt.Sprintf("an operator's approval: the server's policy does not list %s as unattended (approve the plan's action, or stent fleet rollout --bundle %s --channel %s)", policy.ActApplyLivePatch, info.SHA256, w.Channel)
		return &j, put()
	}
	ro, err := w.Client.CreateRollout(ctx, api.RolloutRequest{Bundle: info.SHA256, Channel: w.Channel})
	step("rollout", start)
	if err != nil {
		j.Waiting = fmt.Sprintf("the rollout to %s could not start: %v", w.Channel, err)
		return &j, put()
	}
	j.State, j.Rollout = api.JobRolledOut, ro.ID
	return &j, put()
}

// unattended tells whether the server's policy lets live patches roll out
// without an operator's approval.
func (w *Worker) unattended(ctx context.Context) (bool, error) {
	st, err := w.Client.Policy(ctx, 0)
	if err != nil {
		return false, err
	}
	p := st.Current.Policy
	return p != nil && slices.Contains(p.Unattended, policy.ActApplyLivePatch), nil
}

// deployed returns the newest-level bundle published for release, parsed,
// or nil when there is none.
func (w *Worker) deployed(ctx context.Context, release string) (*deployedBundle, error) {
	bs, err := w.Client.Bundles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the server's bundles: %w", err)
	}
	var best *api.BundleInfo
	for i := range bs {
		b := &bs[i]
		if b.KernelRelease == release && (best == nil || b.Level > best.Level) {
			best = b
		}
	}
	if best == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	if _, _, err := w.Client.Download(ctx, api.PathBundles+best.SHA256, 0, &buf); err != nil {
		return nil, fmt.Errorf("download bundle %s (level %d) to build on: %w", best.SHA256, best.Level, err)
	}
	b, err := bundle.Parse(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("bundle %s from the server: %w", best.SHA256, err)
	}
	return &deployedBundle{SHA256: best.SHA256, Manifest: b.Manifest()}, nil
}

type deployedBundle struct {
	SHA256   string
	Manifest *bundle.Manifest
}

// buildKernel builds one cumulative patch of fixes for k. When the builder
// refuses, each fix is built alone to learn which it refuses and why, and
// the patch is built of the others. res is nil when it refuses every fix.
func (w *Worker) buildKernel(ctx context.Context, dir string, k kernelBuild, to string, fixes []Fix, old *deployedBundle, progress io.Writer) (res *build.Result, kept []Fix, refused []api.FactoryRefusal, err error) {
	files := map[int]string{}
	for _, f := range fixes {
		p := filepath.Join(dir, f.Name()+".patch")
		if err := os.WriteFile(p, []byte(f.Patch), 0o644); err != nil {
			return nil, nil, nil, err
		}
		files[f.Index] = p
	}
	opts := func(fs []Fix) build.Options {
		o := build.Options{
			Kernel: k.release, Name: moduleName(to, k.release), Effective: to, Key: w.Key,
			Description: fmt.Sprintf("stent factory: %s for %s (from %s)", to, k.release, k.version),
			Cache:       w.Options.Cache, Progress: progress,
		}
		if old != nil {
			o.Cumulative = old.Manifest
		}
		for _, f := range fs {
			o.Patches = append(o.Patches, files[f.Index])
			o.CVEs = append(o.CVEs, f.CVEs...)
		}
		return o
	}
	res, err = w.Build(ctx, opts(fixes))
	var re *elfdiff.RefusedError
	if !errors.As(err, &re) {
		if err != nil {
			return nil, fixes, nil, err
		}
		return res, fixes, nil, nil
	}
	if len(fixes) == 1 {
		return nil, nil, []api.FactoryRefusal{refusal(fixes[0], re)}, nil
	}
	// Which fixes does it refuse? Each alone, unsigned and not cumulative.
	for _, f := range fixes {
		o := opts([]Fix{f})
		o.Key, o.Cumulative = nil, nil
		_, err := w.Build(ctx, o)
		var fre *elfdiff.RefusedError
		switch {
		case errors.As(err, &fre):
			refused = append(refused, refusal(f, fre))
		case err != nil:
			return nil, nil, refused, fmt.Errorf("fix %s alone: %w", f.Name(), err)
		default:
			kept = append(kept, f)
		}
	}
	if len(kept) == 0 {
		return nil, nil, refused, nil
	}
	res, err = w.Build(ctx, opts(kept))
	if errors.As(err, &re) {
		// Each builds alone but not together: keep none of them.
		for _, f := range kept {
			refused = append(refused, refusal(f, re))
		}
		return nil, nil, refused, nil
	}
	return res, kept, refused, err
}

func refusal(f Fix, re *elfdiff.RefusedError) api.FactoryRefusal {
	var reasons []string
	for _, r := range re.Refusals {
		reasons = append(reasons, r.String())
	}
	return api.FactoryRefusal{Fix: f.Index, CVEs: f.CVEs, Reason: strings.Join(reasons, "; ")}
}

// moduleName names the live patch of upload to for release:
// "stent_f_6_1_192_3_6_1_0_56". Each upload's has its own name, since a
// module cannot be loaded under the name of one that is.
func moduleName(to, release string) string {
	abi := release
	if i := strings.LastIndex(release, "-"); i > 0 {
		abi = release[:i]
	}
	n := strings.NewReplacer(".", "_", "-", "_", "+", "_", "~", "_").Replace("stent_f_" + to + "_" + abi)
	if len(n) > 55 {
		n = n[:55]
	}
	return n
}

// apiUpload is an upload as the server keeps it.
func apiUpload(u *Upload) api.FactoryUpload {
	out := api.FactoryUpload{Version: u.Version, Previous: u.Previous, Date: u.Date, Skipped: u.Skipped, Fixes: []api.FactoryFix{}}
	for _, f := range u.Fixes {
		out.Fixes = append(out.Fixes, api.FactoryFix{Index: f.Index, Upload: f.Upload, Summary: f.Summary, CVEs: f.CVEs, Files: f.Files, Origin: f.Origin, Commit: f.Commit})
	}
	if u.Unattributed != nil {
		out.Unattributed = u.Unattributed.Files
	}
	for _, s := range u.Steps {
		out.Steps = append(out.Steps, api.FactoryStep{Name: s.Name, Duration: s.Duration})
	}
	return out
}
