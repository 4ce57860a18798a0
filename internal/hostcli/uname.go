package hostcli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func init() { AddCommand(newUnameCmd) }

func newUnameCmd(env *Env) *cobra.Command {
	var rel, ver, all, asJSON bool
	cmd := &cobra.Command{
		Use:   "uname [-r|-v|-a]",
		Short: "Print what uname would print for the effective (live patched) kernel",
		Long: `Print the kernel's uname fields as they are once the applied cumulative
live patch is counted: the version moves to the package version the patch
brings the kernel up to (on Debian, uname -v carries the package version;
on RPM distributions the release does). Scanners and inventory tools can
call this instead of uname to see the patched level. With no flag, prints
the kernel name, like uname.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := env.Runtime().Uname(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return WriteJSON(env.Stdout, u)
			}
			var parts []string
			switch {
			case all:
				parts = []string{u.Sysname, u.Nodename, u.Release, u.Version, u.Machine, "GNU/Linux"}
			default:
				if rel {
					parts = append(parts, u.Release)
				}
				if ver {
					parts = append(parts, u.Version)
				}
				if len(parts) == 0 {
					parts = []string{u.Sysname}
				}
			}
			fmt.Fprintln(env.Stdout, strings.Join(parts, " "))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&rel, "kernel-release", "r", false, "print the kernel release")
	f.BoolVarP(&ver, "kernel-version", "v", false, "print the kernel version")
	f.BoolVarP(&all, "all", "a", false, "print all fields")
	f.BoolVar(&asJSON, "json", false, "print every field, effective and running, as JSON")
	return cmd
}
