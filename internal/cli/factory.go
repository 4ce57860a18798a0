package cli

import "github.com/spf13/cobra"

func init() { addCommand(newFactoryCmd) }

// newFactoryCmd is "stent factory". Each subcommand is in its own file,
// factory_<subcommand>.go.
func newFactoryCmd(env *Env) *cobra.Command {
	sf := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "factory",
		Short: "Turn kernel security uploads into tested, signed live patches for the kernels the fleet runs",
		Long: `The patch factory (docs/factory.md): for each new kernel upload of the
distribution, find the fixes it brings (the difference between the
linux-source packages of the previous and the new upload, split per
changelog item, each with the CVEs the item names; upstream stable fixes
from a git repository of the stable kernel where the kernel CNA record
names the commit).

  stent factory fixes --from 6.1.192-2 --to 6.1.192-3 -o fixes/

The server commands take --server and --token like stent fleet.`,
	}
	sf.bind(cmd.PersistentFlags())
	cmd.AddCommand(factoryFixesCmd(env), factoryStatusCmd(env, sf), factoryRunCmd(env, sf))
	return cmd
}
