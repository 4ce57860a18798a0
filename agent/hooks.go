package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Hooks are the operator's say in reboots: what runs before and after
// one, and what blocks one.
type Hooks struct {
	// PreReboot and PostReboot are folders of executables run in name
	// order (as run-parts does; names starting with "." or ending in "~"
	// are skipped), read at each reboot so hooks can be added without a
	// restart. A pre-reboot hook that exits non-zero (or runs longer than
	// Timeout) postpones the reboot and is reported as a blocker; a
	// post-reboot hook that fails makes the new kernel's boot unhealthy.
	PreReboot, PostReboot string
	// Timeout bounds each hook; default 5m.
	Timeout time.Duration
	// BlockFiles: while any of these exists, the host does not reboot.
	BlockFiles []string
	// PrometheusURL and PrometheusQuery: while the query returns any
	// series (firing alerts, say), the host does not reboot. A Prometheus
	// that cannot be asked blocks too: a reboot is never the safe default.
	PrometheusURL   string
	PrometheusQuery string
}

// DefaultHookTimeout is Hooks.Timeout's default.
const DefaultHookTimeout = 5 * time.Minute

// hookFiles lists the executables of dir in name order.
func hookFiles(dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") || strings.HasSuffix(n, ".dpkg-old") || strings.HasSuffix(n, ".dpkg-dist") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	slices.Sort(out)
	return out, nil
}

// runHooks runs the hooks of dir one after another and returns the first
// failure, naming the hook and quoting the end of its output.
func (a *Agent) runHooks(ctx context.Context, dir, what string) error {
	files, err := hookFiles(dir)
	if err != nil {
		return fmt.Errorf("%s hooks: %w", what, err)
	}
	timeout := a.cfg.Hooks.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	for _, f := range files {
		a.log.Info("running "+what+" hook", "hook", f)
		if err := runHook(ctx, f, what, timeout); err != nil {
			return err
		}
	}
	return nil
}

func runHook(ctx context.Context, path, what string, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, path)
	cmd.Env = append(os.Environ(), "STENT_HOOK="+what)
	cmd.Stdin = nil
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	name := filepath.Base(path)
	switch {
	case cctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("%s hook %s ran longer than %s and was killed%s", what, name, timeout, out.quote())
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s hook %s exited %d%s", what, name, ee.ExitCode(), out.quote())
		}
		return fmt.Errorf("%s hook %s: %w", what, name, err)
	}
	return nil
}

// tailBuffer keeps the last 512 bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 512 {
		t.b = t.b[len(t.b)-512:]
	}
	return len(p), nil
}

func (t *tailBuffer) quote() string {
	s := strings.TrimSpace(string(bytes.ToValidUTF8(t.b, nil)))
	if s == "" {
		return ""
	}
	return ": " + strings.Join(strings.Fields(s), " ")
}

// blockers says what stops the host from rebooting now on its own side.
func (a *Agent) blockers(ctx context.Context) []string {
	var out []string
	for _, f := range a.cfg.Hooks.BlockFiles {
		if _, err := os.Lstat(f); err == nil {
			out = append(out, "file "+f+" exists")
		}
	}
	if h := a.cfg.Hooks; h.PrometheusURL != "" && h.PrometheusQuery != "" {
		if n, err := promSeries(ctx, http.DefaultClient, h.PrometheusURL, h.PrometheusQuery); err != nil {
			out = append(out, "prometheus: "+err.Error())
		} else if n > 0 {
			out = append(out, fmt.Sprintf("prometheus: %d series for %s", n, h.PrometheusQuery))
		}
	}
	return out
}

// promSeries runs an instant query and counts the series it returns.
func promSeries(ctx context.Context, hc *http.Client, base, query string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	u := strings.TrimSuffix(base, "/") + "/api/v1/query?" + url.Values{"query": {query}}.Encode()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("query %s: %w", base, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("query %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, fmt.Errorf("query %s: %w", base, err)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("query %s: HTTP %d, not a Prometheus answer: %w", base, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s %s", base, r.Status, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return 0, fmt.Errorf("query %s: want an instant vector, got %s", base, r.Data.ResultType)
	}
	return len(r.Data.Result), nil
}
