package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/bootldr"
	"github.com/stent-dev/stent/pkgmgr"
)

// kernelListing is stent kernel list's report.
type kernelListing struct {
	Running    string          `json:"running"`
	KnownGood  string          `json:"known_good,omitempty"`
	Pinned     []string        `json:"pinned,omitempty"`
	BootLoader *bootldr.Status `json:"boot_loader,omitempty"`
	BootError  string          `json:"boot_loader_error,omitempty"`
	Kernels    []listedKernel  `json:"kernels"`
	Family     pkgmgr.Family   `json:"package_manager"`
}

type listedKernel struct {
	pkgmgr.Kernel
	Default   bool `json:"default"`
	Next      bool `json:"next_boot"`
	Pinned    bool `json:"pinned"`
	KnownGood bool `json:"known_good"`
}

func newKernelListCmd(env *Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List installed kernels, the running one, the boot default and the next one-shot boot",
		Long: `List the installed kernel packages (from dpkg-query or rpm), marking the
running kernel, the boot loader's default and its one-shot entry for the next
boot, held and pinned kernels and the last known-good one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := kernelManager(env)
			if err != nil {
				return err
			}
			m.Progress = nil
			ks, err := m.Kernels(cmd.Context())
			if err != nil {
				return err
			}
			state, err := pkgmgr.LoadState(kernelStatePath(env))
			if err != nil {
				return err
			}
			pins, err := kernelPins(env, nil)
			if err != nil {
				return err
			}
			rep := kernelListing{KnownGood: state.KnownGood, Pinned: pins, Family: m.Family, Kernels: []listedKernel{}}
			if _, st, err := bootStatus(cmd, env); err != nil {
				rep.BootError = err.Error()
			} else {
				rep.BootLoader = st
			}
			for _, k := range ks {
				lk := listedKernel{Kernel: k, Pinned: slices.Contains(pins, k.Release), KnownGood: k.Release == state.KnownGood}
				if k.Running {
					rep.Running = k.Release
				}
				if st := rep.BootLoader; st != nil {
					lk.Default = st.DefaultRelease == k.Release
					lk.Next = st.NextRelease == k.Release
				}
				rep.Kernels = append(rep.Kernels, lk)
			}
			if asJSON {
				return writeJSON(env.Stdout, rep)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "RELEASE\tPACKAGE\tVERSION\tSTATUS\tMARKS")
			for _, k := range rep.Kernels {
				var marks []string
				for _, mk := range []struct {
					on   bool
					name string
				}{{k.Running, "running"}, {k.Default, "default"}, {k.Next, "next-boot"}, {k.KnownGood, "known-good"},
					{k.Pinned, "pinned"}, {k.Held, "held"}, {k.MetaTarget, "metapackage"}} {
					if mk.on {
						marks = append(marks, mk.name)
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.Release, k.Package, k.Version, k.Status, strings.Join(marks, ","))
			}
			w.Flush()
			if rep.BootLoader != nil {
				fmt.Fprintf(env.Stdout, "Boot loader: %s, default %s", rep.BootLoader.Kind, orDash(rep.BootLoader.DefaultRelease))
				if rep.BootLoader.Next != "" {
					fmt.Fprintf(env.Stdout, ", next boot once %s", orDash(rep.BootLoader.NextRelease))
				}
				if !rep.BootLoader.Saved {
					fmt.Fprint(env.Stdout, " (no pinned saved default: a one-shot boot would not fall back)")
				}
				fmt.Fprintln(env.Stdout)
			} else {
				fmt.Fprintf(env.Stdout, "Boot loader: unknown (%s)\n", rep.BootError)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the listing as JSON")
	return cmd
}
