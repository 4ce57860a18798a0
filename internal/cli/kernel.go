package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/bootldr"
	"github.com/stent-dev/stent/pkgmgr"
)

func init() { addCommand(newKernelCmd) }

func newKernelCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Install, list and clean up this host's kernel packages through its package manager",
		Long: `Install, list and clean up this host's kernel packages through the host's own
package manager (apt on Debian/Ubuntu, dnf on the RHEL family), and show the
boot loader's default and one-shot entries.

Safety rules: held (apt-mark hold) or versionlocked packages are refused,
never forced; /boot free space is checked before installing; the new kernel's
image and initramfs must exist afterwards; cleanup never removes the running
kernel, the last known-good one, a pinned or held one, or the metapackage's
target. The boot loader's default is never changed by these commands.

Files: the known-good kernel is recorded in STATE-DIR/kernel.json (written by
the agent after a healthy boot); pins are read from /etc/stent/kernel-pins,
one kernel release per line. See docs/kernel.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newKernelListCmd(env), newKernelUpgradeCmd(env), newKernelCleanupCmd(env))
	return cmd
}

// kernelManager returns the package manager of the host under env.Root,
// its progress lines going to stderr.
func kernelManager(env *Env) (*pkgmgr.Manager, error) {
	m, err := pkgmgr.New(env.Root)
	if err != nil {
		return nil, err
	}
	m.Progress = prefixWriter{env.Stderr}
	return m, nil
}

// prefixWriter prefixes progress lines with "stent: ".
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "stent: %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func kernelStatePath(env *Env) string { return filepath.Join(env.StateDir, "kernel.json") }

func kernelPinsPath(env *Env) string {
	return filepath.Join(env.Root, strings.TrimPrefix(pkgmgr.PinsFile, "/"))
}

// kernelPins reads the pins file and adds the --pin releases.
func kernelPins(env *Env, extra []string) ([]string, error) {
	pins, err := pkgmgr.LoadPins(kernelPinsPath(env))
	if err != nil {
		return nil, err
	}
	return append(pins, extra...), nil
}

// bootStatus reads the boot loader's entries; a host whose boot loader
// is not known gets a nil status and the reason.
func bootStatus(cmd *cobra.Command, env *Env) (*bootldr.Loader, *bootldr.Status, error) {
	l, err := bootldr.New(env.Root)
	if err != nil {
		return nil, nil, err
	}
	st, err := l.Status(cmd.Context())
	if err != nil {
		return l, nil, err
	}
	return l, st, nil
}

// releaseToRE tells a kernel release (6.1.0-57-amd64,
// 5.14.0-362.8.1.el9_3.x86_64) from a package version (6.1.192-3).
var releaseToRE = regexp.MustCompile(`^\d+\.\d+(\.\d+)?-\d+-[a-z]|\.(x86_64|aarch64|ppc64le|s390x)$`)

// parseTo reads --to: RELEASE, VERSION or RELEASE=VERSION.
func parseTo(s string) (pkgmgr.Target, error) {
	var t pkgmgr.Target
	if s == "" {
		return t, nil
	}
	if r, v, ok := strings.Cut(s, "="); ok {
		if r == "" || v == "" {
			return t, fmt.Errorf("--to %q: want RELEASE=VERSION such as 6.1.0-57-amd64=6.1.192-3", s)
		}
		t.Release, t.Version = r, v
		return t, nil
	}
	if strings.ContainsAny(s, " /\t") {
		return t, fmt.Errorf("--to %q: want a kernel release (6.1.0-57-amd64) or a package version (6.1.192-3)", s)
	}
	if releaseToRE.MatchString(s) {
		t.Release = s
	} else {
		t.Version = s
	}
	return t, nil
}
