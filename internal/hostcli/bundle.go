package hostcli

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/internal/fsutil"
	"github.com/stent-dev/stent/kmod"
)

func init() { AddCommand(newBundleCmd) }

func newBundleCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Create, inspect and verify signed patch bundles",
	}
	cmd.AddCommand(newBundleCreateCmd(env), newBundleInspectCmd(env), newBundleVerifyCmd(env))
	return cmd
}

// Exit codes of stent bundle verify.
const (
	exitRefused   = 1 // the bundle is malformed, tampered with or not trusted
	exitUnchecked = 2 // the bundle or the trusted keys could not be read
)

func newBundleCreateCmd(env *Env) *cobra.Command {
	var keyPath, koPath, manifestPath, outPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --key FILE --ko FILE --manifest FILE -o OUT",
		Short: "Sign a livepatch module and its manifest into a bundle",
		Long: `Sign a livepatch module (.ko) and its manifest (JSON) into a bundle.

The manifest file may leave out format_version, module_sha256, module_size
and created: they are filled in from the module and the clock. The module
must be an ELF relocatable whose .modinfo name= equals the manifest's name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := readManifestFile(manifestPath)
			if err != nil {
				return err
			}
			ko, err := fsutil.ReadFileMax(koPath, bundle.MaxModuleSize)
			if err != nil {
				return fmt.Errorf("read module: %w", err)
			}
			name, err := modinfoName(ko)
			if err != nil {
				return fmt.Errorf("module %s: %w", koPath, err)
			}
			if name != m.Name {
				return fmt.Errorf("module %s is named %q in its .modinfo but the manifest %s says %q: they must match", koPath, name, manifestPath, m.Name)
			}
			key, err := bundle.LoadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
				fmt.Fprintf(env.Stderr, "stent: warning: private key %s is readable by others (mode %v); chmod 600 it\n", keyPath, fi.Mode().Perm())
			}
			var buf bytes.Buffer
			if err := bundle.Create(&buf, m, ko, key); err != nil {
				return fmt.Errorf("%s: %w", manifestPath, err)
			}
			// Read back what was made, as a host would, before writing it.
			b, err := bundle.Parse(buf.Bytes())
			if err == nil {
				err = b.Verify(bundle.NewKeyring(key.Public().(ed25519.PublicKey)))
			}
			if err != nil {
				return fmt.Errorf("bundle made does not verify (a bug): %w", err)
			}
			if err := atomicfile.Write(outPath, buf.Bytes(), 0o644); err != nil {
				return err
			}
			if asJSON {
				return WriteJSON(env.Stdout, bundleReport{File: outPath, Size: int64(buf.Len()), KeyID: b.KeyID(), Verified: true, Manifest: b.Manifest()})
			}
			bm := b.Manifest()
			fmt.Fprintf(env.Stdout, "wrote %s (%d bytes): %s level %d for %s, signed by key %s\n", outPath, buf.Len(), bm.Name, bm.Level, bm.Kernel.Release, b.KeyID())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyPath, "key", "", "private key file (PKCS#8 PEM, from stent key generate)")
	f.StringVar(&koPath, "ko", "", "livepatch kernel module (.ko)")
	f.StringVar(&manifestPath, "manifest", "", "manifest JSON file")
	f.StringVarP(&outPath, "output", "o", "", "bundle file to write")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	for _, n := range []string{"key", "ko", "manifest", "output"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

// readManifestFile reads a manifest as written by hand or by the builder,
// strictly, and fills the fields that may be left out.
func readManifestFile(path string) (*bundle.Manifest, error) {
	data, err := fsutil.ReadFileMax(path, bundle.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := bundle.DecodeManifest(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	if m.FormatVersion == 0 {
		m.FormatVersion = bundle.FormatVersion
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	return m, nil // bundle.Create fills module_sha256 and module_size
}

// modinfoName returns the name= entry of a kernel module's .modinfo
// section, refusing anything kmod.ModInfo would not load.
func modinfoName(ko []byte) (string, error) {
	info, err := kmod.ModInfo(ko)
	if err != nil {
		return "", err
	}
	return info.Name, nil
}

// bundleReport is what inspect, verify and create print with --json.
type bundleReport struct {
	File     string           `json:"file"`
	Size     int64            `json:"size,omitempty"`
	KeyID    bundle.KeyID     `json:"key_id,omitzero"`
	Signer   string           `json:"signer,omitempty"` // the trusted .pub file that verified it
	Verified bool             `json:"verified"`
	Reason   string           `json:"reason,omitempty"` // why not verified: see refusalReason
	Error    string           `json:"error,omitempty"`
	Manifest *bundle.Manifest `json:"manifest,omitempty"`
}

// refusalReason names, for scripts, why a bundle was refused.
func refusalReason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{bundle.ErrUnknownKey, "unknown_key"},
		{bundle.ErrBadSignature, "bad_signature"},
		{bundle.ErrDigestMismatch, "digest_mismatch"},
		{bundle.ErrUnknownVersion, "unknown_version"},
		{bundle.ErrTooLarge, "too_large"},
		{bundle.ErrInvalidManifest, "invalid_manifest"},
		{bundle.ErrMalformed, "malformed"},
		{bundle.ErrBadKeyFile, "bad_key_file"},
		{bundle.ErrUnsafeKeyPath, "unsafe_keys"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "unreadable"
}

// isRefusal tells a bundle that was read and refused from one that could
// not be checked at all.
func isRefusal(err error) bool {
	switch refusalReason(err) {
	case "unreadable", "bad_key_file", "unsafe_keys":
		return false
	}
	return true
}

// checkBundle reads path and verifies it against the trusted keys. It
// returns the bundle when it could be parsed, and the verification result.
func checkBundle(env *Env, path string) (*bundle.Bundle, bundleReport, error) {
	rep := bundleReport{File: path}
	if fi, err := os.Stat(path); err == nil {
		rep.Size = fi.Size()
	}
	b, err := bundle.ReadFile(path)
	if err != nil {
		return nil, rep, err
	}
	rep.KeyID, rep.Manifest = b.KeyID(), b.Manifest()
	kr, err := bundle.LoadKeyring(env.KeysDir)
	if err != nil {
		return b, rep, err
	}
	if err := b.Verify(kr); err != nil {
		return b, rep, err
	}
	rep.Verified = true
	if k, ok := kr.Lookup(b.KeyID()); ok {
		rep.Signer = k.Path
	}
	return b, rep, nil
}

func newBundleInspectCmd(env *Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a bundle's manifest, signing key and whether it verifies",
		Long: `Print a bundle's manifest, signing key and whether it verifies against the
trusted keys in --keys-dir. It exits 0 whenever the bundle can be parsed,
verified or not: use stent bundle verify for a yes or no.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, rep, err := checkBundle(env, args[0])
			if b == nil {
				return err
			}
			if err != nil {
				rep.Reason, rep.Error = refusalReason(err), err.Error()
			}
			if asJSON {
				return WriteJSON(env.Stdout, rep)
			}
			printBundle(env.Stdout, rep, err)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printBundle(w io.Writer, rep bundleReport, verifyErr error) {
	m := rep.Manifest
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, args...)) }
	line("file", "%s (%d bytes)", rep.File, rep.Size)
	line("name", "%s", m.Name)
	kernel := m.Kernel.Release
	if m.Kernel.PackageVersion != "" {
		kernel += ", package " + m.Kernel.PackageVersion
	}
	if m.Kernel.BuildID != "" {
		kernel += ", build id " + m.Kernel.BuildID
	}
	line("kernel", "%s", kernel)
	if m.Replace {
		line("level", "%d, cumulative (replaces lower levels)", m.Level)
	} else {
		line("level", "%d, not cumulative (stacks on patches already applied)", m.Level)
	}
	if e := m.Effective; e != nil {
		if e.VersionString != "" {
			line("effective", "%s (%s)", e.PackageVersion, e.VersionString)
		} else {
			line("effective", "%s", e.PackageVersion)
		}
	}
	if len(m.CVEs) > 0 {
		line("cves", "%s", strings.Join(m.CVEs, ", "))
	}
	for i, fn := range m.Functions {
		k := ""
		if i == 0 {
			k = "functions:"
		}
		s := fn.Object + ":" + fn.Name
		if fn.Sympos != 0 {
			s += fmt.Sprintf(",%d", fn.Sympos)
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, s)
	}
	for i, l := range strings.Split(m.Description, "\n") {
		k := ""
		if i == 0 {
			k = "description:"
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, l)
	}
	line("created", "%s", m.Created.Format(time.RFC3339))
	line("module", "%d bytes, sha256 %s", m.ModuleSize, m.ModuleSHA256)
	if m.SourceSHA256 != "" {
		line("source", "sha256 %s", m.SourceSHA256)
	}
	signer := "key " + rep.KeyID.String()
	if rep.Signer != "" {
		signer += " (" + rep.Signer + ")"
	}
	line("signed by", "%s", signer)
	if verifyErr == nil {
		line("verified", "yes")
	} else {
		line("verified", "no: %v", verifyErr)
	}
	tw.Flush()
}

func newBundleVerifyCmd(env *Env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a bundle's structure and signature against the trusted keys",
		Long: `Check a bundle's structure, module digest and signature against the trusted
keys in --keys-dir. Exit status: 0 verified; 1 refused (malformed, tampered
with, or signed by a key that is not trusted); 2 not checked (the bundle,
the trusted keys folder or a key file in it could not be read, or others
than root and the running user could write them: the folder, the folders
above it and the key files must be owned by root or you and writable by
their owner only, as sshd's StrictModes asks).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			b, rep, err := checkBundle(env, path)
			code := exitRefused
			if err != nil && b != nil {
				err = fmt.Errorf("%s does not verify: %w", path, err)
			}
			if err != nil {
				rep.Reason, rep.Error = refusalReason(err), err.Error()
				if !isRefusal(err) {
					code = exitUnchecked
				}
			}
			if asJSON {
				rep.Manifest = nil // verify answers yes or no; inspect shows the manifest
				if werr := WriteJSON(env.Stdout, rep); werr != nil {
					return werr
				}
			}
			if err != nil {
				return WithCode(code, err)
			}
			if !asJSON {
				m := rep.Manifest
				fmt.Fprintf(env.Stdout, "%s: verified: %s level %d for %s, signed by key %s (%s)\n", path, m.Name, m.Level, m.Kernel.Release, rep.KeyID, rep.Signer)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
