package hostcli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/patcher"
)

func init() { AddCommand(newStatusCmd) }

func newStatusCmd(env *Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running kernel and its live patches",
		Long: `Show the running kernel (release, distribution package version, build ID),
whether it can be live patched and why not, its taint flags decoded, every
loaded live patch with its enabled and transition state, objects and
functions, and, during a transition, the tasks still running the old code
with their kernel stacks. Also lists the patches stored for boot and any
that were quarantined after a crash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := env.Runtime().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return WriteJSON(env.Stdout, st)
			}
			printStatus(env.Stdout, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func printStatus(out io.Writer, st *patcher.Status) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	k := st.Kernel
	kline := k.Release
	var extra []string
	if k.PackageVersion != "" {
		extra = append(extra, "package "+k.PackageVersion)
	}
	if k.BuildID != "" {
		extra = append(extra, "build "+k.BuildID)
	}
	if len(extra) > 0 {
		kline += " (" + strings.Join(extra, ", ") + ")"
	}
	fmt.Fprintf(w, "Kernel:\t%s\n", kline)
	if st.Distro != nil {
		name := st.Distro.PrettyName
		if name == "" {
			name = st.Distro.ID + " " + st.Distro.VersionID
		}
		fmt.Fprintf(w, "Distribution:\t%s\n", name)
	}
	if st.Support.Supported {
		fmt.Fprintf(w, "Live patching:\tsupported\n")
	} else {
		fmt.Fprintf(w, "Live patching:\tNOT supported: %s\n", strings.Join(st.Support.Reasons, "; "))
	}
	if st.Support.Supported {
		for _, r := range st.Support.Reasons {
			fmt.Fprintf(w, "\tnote: %s\n", r)
		}
	}
	if st.Taint.Value == 0 {
		fmt.Fprintf(w, "Taint:\tnone\n")
	} else {
		fmt.Fprintf(w, "Taint:\t%s (%d)\n", st.Taint, st.Taint.Value)
		for _, f := range st.Taint.Flags {
			fmt.Fprintf(w, "\t  %s  %s\n", f.Letter, f.Reason)
		}
	}
	if e := st.Effective; e != nil && e.PatchedBy != "" {
		fmt.Fprintf(w, "Effective kernel:\t%s %s (set by %s)\n", e.Release, e.PackageVersion, e.PatchedBy)
	}
	w.Flush()

	fmt.Fprintln(out)
	if len(st.Patches) == 0 {
		fmt.Fprintln(out, "No live patches loaded.")
	} else {
		fmt.Fprintln(out, "Live patches:")
		for _, p := range st.Patches {
			printPatch(out, p)
		}
	}
	for _, t := range st.Transitions {
		if t.Note != "" {
			fmt.Fprintf(out, "\nTransition of %s to %s: tasks unknown: %s\n", t.Patch, t.Target, t.Note)
			continue
		}
		fmt.Fprintf(out, "\nTransition of %s to %s: %d task(s) still on the old code\n", t.Patch, t.Target, len(t.Blockers))
		for _, b := range t.Blockers {
			fmt.Fprintf(out, "  pid %d (tid %d) %s\n", b.PID, b.TID, b.Comm)
			for _, fr := range b.Stack {
				fmt.Fprintf(out, "      %s\n", fr)
			}
		}
	}
	if len(st.Stored) > 0 {
		fmt.Fprintln(out, "\nStored for boot (stent load-persisted):")
		for _, s := range st.Stored {
			fmt.Fprintf(out, "  %s  level %d  kernel %s\n", s.Name, s.Level, s.Release)
		}
	}
	for _, g := range st.Guarded {
		fmt.Fprintf(out, "\nCrash guard: %s was loaded at %s; if the machine goes down without a clean shutdown before stent persist confirm runs (%s after loading), it will not be loaded at the next boot\n", g.Name, g.LoadedAt.Format("2006-01-02 15:04:05Z07:00"), guardWindow)
	}
	if len(st.Quarantined) > 0 {
		fmt.Fprintln(out, "\nQuarantined (not loaded at boot):")
		for _, q := range st.Quarantined {
			fmt.Fprintf(out, "  %s: %s\n", q.Name, q.Reason)
		}
	}
}

func printPatch(out io.Writer, p patcher.PatchStatus) {
	state := "disabled"
	if p.Enabled {
		state = "enabled"
	}
	if p.Transition {
		state += ", in transition"
	}
	attrs := []string{state}
	if p.Replace != nil && *p.Replace {
		attrs = append(attrs, "cumulative")
	}
	if p.StackOrder != nil {
		attrs = append(attrs, fmt.Sprintf("stack order %d", *p.StackOrder))
	}
	if r := p.Record; r != nil {
		if r.Manifest != nil {
			attrs = append(attrs, fmt.Sprintf("level %d", r.Manifest.Level))
			if r.Manifest.Replace && (p.Replace == nil) {
				attrs = append(attrs, "cumulative")
			}
		}
		if r.Signed {
			attrs = append(attrs, "signed by "+r.KeyID)
		} else {
			attrs = append(attrs, "unsigned")
		}
		if r.Forced {
			attrs = append(attrs, "FORCED")
		}
		if r.Applying {
			attrs = append(attrs, "being applied by stent")
		}
	} else {
		attrs = append(attrs, "not applied by stent")
	}
	fmt.Fprintf(out, "  %s  [%s]\n", p.Name, strings.Join(attrs, ", "))
	if r := p.Record; r != nil && r.Manifest != nil {
		if len(r.Manifest.CVEs) > 0 {
			fmt.Fprintf(out, "      fixes: %s\n", strings.Join(r.Manifest.CVEs, " "))
		}
		if r.Manifest.Description != "" {
			fmt.Fprintf(out, "      %s\n", firstLine(r.Manifest.Description))
		}
	}
	for _, o := range p.Objects {
		ps := ""
		switch {
		case o.Patched != nil && *o.Patched:
			ps = " (patched)"
		case o.Patched != nil && o.Name != "vmlinux" && p.Enabled:
			ps = " (not patched: module not loaded; patched when it loads)"
		case o.Patched != nil:
			ps = " (not patched)"
		}
		fns := make([]string, 0, len(o.Funcs))
		for _, f := range o.Funcs {
			s := f.Name
			if f.Sympos > 1 {
				s += fmt.Sprintf(",%d", f.Sympos)
			}
			fns = append(fns, s)
		}
		fmt.Fprintf(out, "      %s%s: %s\n", o.Name, ps, strings.Join(fns, " "))
	}
}

// guardWindow is the runtime's default crash guard window, for messages.
const guardWindow = "10m"

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
