package pkgmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Runner runs one command and returns what it printed. err is non-nil when
// the command could not start, failed (an *exec.ExitError, or any error
// carrying ExitCode), or was stopped by ctx. env entries are added to the
// runner's own environment. Tests replace it with a recorded sequence.
type Runner interface {
	Run(ctx context.Context, name string, args []string, env []string) (stdout, stderr []byte, err error)
}

// DefaultTimeout bounds one package manager command run by ExecRunner.
const DefaultTimeout = 30 * time.Minute

// ExecRunner runs commands with os/exec: stdin is /dev/null (a question
// reads end of file and fails instead of hanging), the command runs in a
// process group of its own, and the whole group is killed when ctx is
// cancelled or Timeout passes.
type ExecRunner struct {
	Timeout time.Duration // per command; zero means DefaultTimeout
}

// Run implements Runner.
func (r ExecRunner) Run(ctx context.Context, name string, args []string, env []string) ([]byte, []byte, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil // os/exec connects /dev/null
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// dpkg and its maintainer scripts are children of apt-get:
		// kill the whole group, not only apt-get.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		if parent.Err() != nil {
			err = fmt.Errorf("%s: %w", name, parent.Err())
		} else {
			err = fmt.Errorf("%s: killed after %s without finishing: %w", name, timeout, ctx.Err())
		}
	}
	return stdout.Bytes(), stderr.Bytes(), err
}

// exitCode returns the exit status carried by err, or -1.
func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return -1
}

// commandLine renders a command for messages.
func commandLine(name string, args []string) string {
	return strings.TrimSpace(name + " " + strings.Join(args, " "))
}
