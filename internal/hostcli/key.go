package hostcli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/bundle"
)

func init() { AddCommand(newKeyCmd) }

func newKeyCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Make bundle signing keys and list the keys this host trusts",
	}
	cmd.AddCommand(newKeyGenerateCmd(env), newKeyListCmd(env))
	return cmd
}

// DefaultSigningDir is where `stent key generate` writes without --out:
// $XDG_CONFIG_HOME/stent, else ~/.config/stent, for root too. Signing keys
// belong to whoever builds bundles, not to a host, and keeping them out of
// /etc/stent keeps them away from the trusted keys folder hosts read.
func DefaultSigningDir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find a folder for the key: %w; pass --out", err)
	}
	return filepath.Join(dir, "stent"), nil
}

type keyGenerateResult struct {
	Private string       `json:"private_key"`
	Public  string       `json:"public_key"`
	KeyID   bundle.KeyID `json:"key_id"`
}

func newKeyGenerateCmd(env *Env) *cobra.Command {
	var out, name string
	var force, asJSON bool
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Make a new ed25519 key pair for signing bundles",
		Long: `Make a new ed25519 key pair for signing bundles: NAME.key (PKCS#8 PEM, mode
0600) and NAME.pub (PKIX PEM) in --out, by default $XDG_CONFIG_HOME/stent,
that is ~/.config/stent. Hosts trust bundles signed with it once NAME.pub is
copied into their trusted keys folder (/etc/stent/keys). Existing files are
kept unless --force is given. An existing --out folder that others than root
and you may write to (group or world writable, or owned by another user) is
refused: they could swap the keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				d, err := DefaultSigningDir()
				if err != nil {
					return err
				}
				out = d
			}
			kf, err := bundle.GenerateKey(out, name, force)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w; pass --force to replace it (bundles signed with the old key will then only verify where its .pub is still trusted)", err)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return WriteJSON(env.Stdout, keyGenerateResult{Private: kf.Private, Public: kf.Public, KeyID: kf.ID})
			}
			fmt.Fprintf(env.Stdout, "private key: %s (keep it secret; sign with stent bundle create --key)\n", kf.Private)
			fmt.Fprintf(env.Stdout, "public key:  %s\n", kf.Public)
			fmt.Fprintf(env.Stdout, "key id:      %s\n", kf.ID)
			fmt.Fprintf(env.Stdout, "To trust it on a host, copy %s into %s/.\n", filepath.Base(kf.Public), env.KeysDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "folder to write the key pair to (default $XDG_CONFIG_HOME/stent or ~/.config/stent)")
	f.StringVar(&name, "name", "signing", "base name of the key files: NAME.key and NAME.pub")
	f.BoolVar(&force, "force", false, "replace existing key files")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

type keyListEntry struct {
	KeyID bundle.KeyID `json:"key_id"`
	File  string       `json:"file"`
}

func newKeyListCmd(env *Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the trusted public keys (*.pub in --keys-dir) with their ids",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kr, err := bundle.LoadKeyring(env.KeysDir)
			missing := errors.Is(err, fs.ErrNotExist)
			if err != nil && !missing {
				return err
			}
			entries := []keyListEntry{}
			for _, k := range kr.Keys() { // a nil keyring has no keys
				entries = append(entries, keyListEntry{KeyID: k.ID, File: k.Path})
			}
			if asJSON {
				return WriteJSON(env.Stdout, entries)
			}
			switch {
			case missing:
				fmt.Fprintf(env.Stdout, "no trusted keys: %s does not exist\n", env.KeysDir)
				return nil
			case len(entries) == 0:
				fmt.Fprintf(env.Stdout, "no trusted keys in %s\n", env.KeysDir)
				return nil
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY ID\tFILE")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\n", e.KeyID, e.File)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the keys as JSON")
	return cmd
}
