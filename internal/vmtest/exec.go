package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/vmtest/wire"
)

// Cmd is a command to run in the guest.
type Cmd struct {
	Argv    []string
	Stdin   []byte
	Env     []string      // "K=V" added to the default environment (PATH, HOME=/root)
	Dir     string        // working directory; default /
	Timeout time.Duration // the guest kills the command's process group after it; default: ctx's deadline, else 5 minutes
}

// Result is what a command did.
type Result struct {
	Stdout string
	Stderr string
	Exit   int // exit status; 128+n when killed by signal n
	// Duration is the command's wall time measured in the guest, free of
	// the control channel's round trip; MaxRSSKB its peak resident set
	// size (with reaped descendants), from wait4(2).
	Duration time.Duration
	MaxRSSKB int64
}

// ExitError is returned by Exec, Run and Sh when the command exited with a
// status other than zero. The Result is returned as well.
type ExitError struct {
	Argv []string
	Result
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("guest: %s: exit status %d", strings.Join(e.Argv, " "), e.Exit)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Exec runs a command in the guest and waits for it. The error is an
// *ExitError when the command ran and failed; other errors mean it could
// not be run or did not finish (timeout, guest gone).
func (vm *VM) Exec(ctx context.Context, cmd Cmd) (Result, error) {
	c, err := vm.client()
	if err != nil {
		return Result{}, err
	}
	if len(cmd.Argv) == 0 {
		return Result{}, errors.New("vmtest: Exec: empty Argv")
	}
	// The guest's own timeout fires a little before ctx's deadline, so a
	// command that runs too long still reports what it printed.
	timeout := cmd.Timeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return Result{}, ctx.Err()
		}
		if left > 2*time.Second {
			left -= time.Second
		}
		if timeout == 0 || left < timeout {
			timeout = left
		}
	}
	resp, err := c.do(ctx, wire.Request{
		Op: wire.OpRun, Argv: cmd.Argv, Stdin: cmd.Stdin, Env: cmd.Env, Dir: cmd.Dir,
		TimeoutMS: timeout.Milliseconds(),
	})
	if err != nil {
		return Result{}, fmt.Errorf("guest: %s: %w", strings.Join(cmd.Argv, " "), vm.explain(err))
	}
	res := Result{Stdout: string(resp.Stdout), Stderr: string(resp.Stderr), Exit: resp.Exit,
		Duration: time.Duration(resp.DurationNS), MaxRSSKB: resp.MaxRSSKB}
	if resp.Error != "" {
		return res, fmt.Errorf("guest: %s", resp.Error)
	}
	if res.Exit != 0 {
		return res, &ExitError{Argv: cmd.Argv, Result: res}
	}
	return res, nil
}

// Run runs name with args in the guest; see Exec.
func (vm *VM) Run(ctx context.Context, name string, args ...string) (Result, error) {
	return vm.Exec(ctx, Cmd{Argv: append([]string{name}, args...)})
}

// Sh runs a shell script with busybox sh -c; see Exec.
func (vm *VM) Sh(ctx context.Context, script string) (Result, error) {
	return vm.Exec(ctx, Cmd{Argv: []string{"/bin/sh", "-c", script}})
}

// WriteFile writes a file in the guest, creating its folders. Under /sys and
// /proc it writes in place (e.g. "0" to a live patch's enabled file).
func (vm *VM) WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error {
	c, err := vm.client()
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, wire.Request{Op: wire.OpWrite, Path: path, Data: data, Mode: uint32(perm.Perm())})
	if err != nil {
		err = vm.explain(err)
	} else if resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		return fmt.Errorf("guest: write %s: %w", path, err)
	}
	return nil
}

// ReadFile reads a file in the guest.
func (vm *VM) ReadFile(ctx context.Context, path string) ([]byte, error) {
	c, err := vm.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, wire.Request{Op: wire.OpRead, Path: path})
	if err != nil {
		err = vm.explain(err)
	} else if resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		return nil, fmt.Errorf("guest: read %s: %w", path, err)
	}
	return resp.Data, nil
}
