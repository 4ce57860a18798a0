package pkgmgr

import (
	"errors"
	"fmt"
	"strings"
)

// Errors callers branch on. A *CommandError wraps one of them when the
// package manager's message says which it is.
var (
	// ErrHeld: a package the operation needs is held (apt-mark hold) or
	// versionlocked (dnf versionlock). Stent never overrides a hold.
	ErrHeld = errors.New("package is held")
	// ErrNoSpace: not enough free space, found before installing (the
	// estimate) or reported by the package manager.
	ErrNoSpace = errors.New("not enough free space")
	// ErrDpkgInterrupted: an earlier dpkg run was interrupted; the
	// operator must run dpkg --configure -a.
	ErrDpkgInterrupted = errors.New("dpkg was interrupted")
	// ErrLocked: another package manager kept the lock past the wait.
	ErrLocked = errors.New("package manager lock is held by another process")
	// ErrUnreachable: a repository could not be reached.
	ErrUnreachable = errors.New("repository unreachable")
	// ErrNotFound: the asked package or version is not in any repository.
	ErrNotFound = errors.New("package or version not found")
	// ErrIncomplete: the package manager finished but the kernel is not
	// fully installed (a package not configured, /boot files missing).
	ErrIncomplete = errors.New("kernel installation incomplete")
	// ErrNotSupported: the host's package manager is not one pkgmgr knows.
	ErrNotSupported = errors.New("package manager not supported")
	// ErrProtected: cleanup was asked to remove a kernel it must keep.
	ErrProtected = errors.New("kernel is protected from removal")
)

// CommandError is a package manager command that failed, with the end of
// its own message.
type CommandError struct {
	Command  string // the command line run
	ExitCode int    // -1 when it did not exit by itself
	Message  string // the last lines of its stderr (or stdout when stderr was empty)
	Kind     error  // one of the Err* values, or nil when not recognised
	Err      error  // the runner's error
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", e.Command)
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, "exit status %d", e.ExitCode)
	} else {
		b.WriteString(e.Err.Error())
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if h := hint(e.Kind); h != "" {
		fmt.Fprintf(&b, " (%s)", h)
	}
	return b.String()
}

func (e *CommandError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

func hint(kind error) string {
	switch kind {
	case ErrDpkgInterrupted:
		return "dpkg was interrupted: run dpkg --configure -a as root, then try again"
	case ErrLocked:
		return "another apt, dpkg or dnf is running: wait for it to finish, then try again"
	case ErrUnreachable:
		return "check the repositories in the sources list and the network"
	case ErrNoSpace:
		return "free space (stent kernel cleanup removes old kernels), then try again"
	case ErrNotFound:
		return "check the version with apt-cache policy or dnf list --showduplicates"
	}
	return ""
}

// messageLines is how many lines of a command's output an error keeps.
const messageLines = 6

// lastLines returns the last n non-empty lines of out, joined by "; ",
// leaving out apt's notices ("N: ...").
func lastLines(out []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "N: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// failureMessage picks the package manager's own words from a failed
// command: apt-get prints dpkg's and the maintainer scripts' messages on
// stdout and its own errors ("E: ...") on stderr.
func failureMessage(stdout, stderr []byte) string {
	var parts []string
	out := string(stdout)
	if strings.Contains(out, "dpkg: error") || strings.Contains(out, "Errors were encountered") || strings.Contains(out, "rror:") {
		// From the last package being set up or unpacked to the end.
		start := max(strings.LastIndex(out, "\nSetting up "), strings.LastIndex(out, "\nUnpacking "), strings.LastIndex(out, "\nPreparing to unpack "))
		if start < 0 {
			start = 0
		}
		parts = append(parts, lastLines([]byte(out[start:]), messageLines))
	}
	if s := lastLines(stderr, messageLines); s != "" {
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return lastLines(stdout, messageLines)
	}
	return strings.Join(parts, "; ")
}

// classify names the failure a package manager's output describes.
func classify(out string) error {
	switch {
	case strings.Contains(out, "dpkg was interrupted"),
		strings.Contains(out, "dpkg --configure -a"):
		return ErrDpkgInterrupted
	case strings.Contains(out, "No space left on device"),
		strings.Contains(out, "You don't have enough free space"),
		strings.Contains(out, "Disk Requirements:"):
		return ErrNoSpace
	case strings.Contains(out, "Could not get lock"),
		strings.Contains(out, "Unable to acquire the dpkg frontend lock"),
		strings.Contains(out, "Waiting for process with pid"):
		return ErrLocked
	case strings.Contains(out, "Temporary failure resolving"),
		strings.Contains(out, "Failed to fetch"),
		strings.Contains(out, "Unable to fetch some archives"),
		strings.Contains(out, "Could not connect to"),
		strings.Contains(out, "Cannot download repomd.xml"),
		strings.Contains(out, "Failed to download metadata"),
		strings.Contains(out, "Curl error"):
		return ErrUnreachable
	case strings.Contains(out, "Unable to locate package"),
		strings.Contains(out, "was not found"),
		strings.Contains(out, "has no installation candidate"),
		strings.Contains(out, "No match for argument"):
		return ErrNotFound
	}
	return nil
}

// commandError builds the error for a failed command.
func commandError(name string, args []string, stdout, stderr []byte, err error) *CommandError {
	msg := failureMessage(stdout, stderr)
	return &CommandError{
		Command:  commandLine(name, args),
		ExitCode: exitCode(err),
		Message:  msg,
		Kind:     classify(string(stderr) + "\n" + string(stdout)),
		Err:      err,
	}
}
