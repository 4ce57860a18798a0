package build

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// groupCommand is exec.CommandContext for tools that start children of
// their own (make and its sub-makes, compilers, objtool; shell pipelines).
// The command runs in its own process group, and cancelling ctx sends
// SIGTERM to the whole group, so make removes the target it was writing and
// nothing goes on writing into the tree after the build has returned and
// released the tree's lock. Plain cancellation would SIGKILL only the
// top process and leave its children running.
func groupCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second // then the top process gets SIGKILL
	return cmd
}

// runGroup runs a command made by groupCommand; after a cancellation it
// kills whatever is left of the group once the top process has exited.
func runGroup(ctx context.Context, cmd *exec.Cmd) error {
	err := cmd.Run()
	if ctx.Err() != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH when none is left
	}
	return err
}
