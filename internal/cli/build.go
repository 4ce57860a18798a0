package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/elfdiff"
	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/internal/kpkg"
)

func init() { addCommand(newBuildCmd) }

type buildResult struct {
	Bundle    string             `json:"bundle"`
	Name      string             `json:"name"`
	Kernel    bundle.Kernel      `json:"kernel"`
	Level     int64              `json:"level"`
	Replace   bool               `json:"replace"`
	CVEs      []string           `json:"cves,omitempty"`
	Functions []elfdiff.Func     `json:"functions"`
	New       []string           `json:"new_functions,omitempty"`
	Callbacks []elfdiff.Callback `json:"callbacks,omitempty"` // stent/livepatch.h's klp callbacks
	LineOnly  []string           `json:"line_only,omitempty"`
	Hunks     []build.Hunk       `json:"moved_hunks,omitempty"` // applied with an offset or fuzz
	Warnings  []string           `json:"warnings,omitempty"`
	KeyID     bundle.KeyID       `json:"key_id"`
	Module    string             `json:"module_sha256"`
	Steps     []build.Step       `json:"steps"`
	WorkDir   string             `json:"work_dir,omitempty"`
	Refusals  []elfdiff.Refusal  `json:"refusals,omitempty"`
}

func newBuildCmd(env *Env) *cobra.Command {
	var opts build.Options
	var out, keyFile, cumulative string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "build --kernel RELEASE --patch FIX.patch -o OUT.bundle",
		Short: "Build a signed live patch bundle from a source fix",
		Long: `Build a live patch for one kernel build from a source fix, without building
the whole kernel: fetch the kernel's packages and source, compile only the
files the fix touches before and after applying it, compare the objects,
and link the changed functions into a livepatch module signed into a
bundle. Packages, source and the prepared tree are cached under
$STENT_CACHE (default: .cache of the Stent checkout run from, else
$XDG_CACHE_HOME/stent).

The fix is a unified diff against the kernel source (diff -u, git diff);
--patch may be repeated, the files are applied in order. A fix that changes
a header needs --object for each object to rebuild. --source DIR is
prepared in place: its .config is replaced by the kernel's, make
olddefconfig modules_prepare runs in it, and the builder keeps its files in
DIR/.stent.

A fix may #include <stent/livepatch.h>, Stent's header, which the builder
puts in the tree while the patched files compile: STENT_SYSCALL_DEFINEn
in place of SYSCALL_DEFINEn to change a syscall's body; STENT_PRE_PATCH,
STENT_POST_PATCH, STENT_PRE_UNPATCH, STENT_POST_UNPATCH(fn) to run a new
function as a klp callback of the file's object; STENT_SHADOW(name, id,
type) for new state attached to existing objects (klp_shadow_*). See
docs/builder.md.

Fixes that cannot be live patched safely are refused with the reason and an
alternative (exit code 2): changed layout or initial value of existing
data (or a static variable moved to another function), __init code,
functions ftrace cannot redirect (a syscall body: the refusal says to use
STENT_SYSCALL_DEFINEn), COMDAT groups, new exports, static keys of a
module, special sections the builder does not know, symbols neither the
kernel nor the fix has, callbacks that are not new functions or clash.
Other failures
(the fix does not apply or compile, the source does not reproduce the
shipped code) exit 1.

Hunks that apply at an offset are reported as warnings. A hunk that applies
only with fuzz (patch(1) ignoring context lines that differ from this
kernel's source) may change other lines than the fix meant: the build stops
naming it, unless --allow-fuzz is given (then it is a warning too).

The bundle is signed with --key, by default with the key stent key generate
makes ($XDG_CONFIG_HOME/stent/signing.key, created on first use).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Cheap checks first: nothing (a signing key, say) is made for a
			// command line that cannot work.
			if out == "" {
				return errors.New("no output file given (-o OUT.bundle)")
			}
			if opts.Kernel == "" {
				return errors.New("build: no kernel release given (--kernel, e.g. 6.1.0-56-amd64)")
			}
			if len(opts.Patches) == 0 {
				return errors.New("build: no fix given (--patch FIX.patch)")
			}
			for _, p := range opts.Patches {
				b, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("read fix: %w", err)
				}
				if _, err := build.ParsePatch(b); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			if cumulative != "" && opts.NoReplace {
				return errors.New("build: --cumulative-with makes a patch that replaces the earlier one; --no-replace makes one that stacks on it: pass one of the two")
			}
			key, keyMsg, err := signingKey(keyFile)
			if err != nil {
				return err
			}
			if cumulative != "" {
				b, err := bundle.ReadFile(cumulative)
				if err != nil {
					return fmt.Errorf("--cumulative-with: %w", err)
				}
				opts.Cumulative = b.Manifest()
			}
			opts.Progress = env.Stderr
			if opts.Cache == "" {
				if opts.Cache, err = buildCache(); err != nil {
					return err
				}
			}
			if keyMsg != "" {
				fmt.Fprintln(env.Stderr, keyMsg)
			}
			opts.Key = key
			res, err := build.Build(cmd.Context(), opts)
			var re *elfdiff.RefusedError
			if errors.As(err, &re) {
				if asJSON {
					_ = writeJSON(env.Stdout, buildResult{Name: opts.Name, Refusals: re.Refusals})
				}
				return withCode(2, err)
			}
			if err != nil {
				return err
			}
			if err := atomicfile.Write(out, res.Bundle, 0o644); err != nil {
				return fmt.Errorf("write bundle: %w", err)
			}
			r := buildResult{
				Bundle: out, Name: res.Manifest.Name, Kernel: res.Manifest.Kernel, Level: res.Manifest.Level,
				Replace: res.Manifest.Replace, CVEs: res.Manifest.CVEs, Functions: res.Funcs, New: res.New, Callbacks: res.Callbacks,
				LineOnly: res.LineOnly, Hunks: res.Hunks, Warnings: res.Warnings, KeyID: res.KeyID, Steps: res.Steps,
				WorkDir: res.WorkDir, Module: res.Manifest.ModuleSHA256,
			}
			if asJSON {
				return writeJSON(env.Stdout, r)
			}
			printBuild(env.Stdout, r)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kernel, "kernel", "", "target kernel release (uname -r), e.g. 6.1.0-56-amd64")
	f.StringArrayVar(&opts.Patches, "patch", nil, "source fix (unified diff); repeat to apply several in order")
	f.StringVar(&opts.Source, "source", "", "kernel source tree to use instead of the distribution's source package")
	f.StringVar(&opts.Name, "name", "", "patch and module name (default stent_<patch file name>)")
	f.StringArrayVar(&opts.CVEs, "cve", nil, "CVE id the fix addresses; repeatable")
	f.StringVar(&opts.Description, "description", "", "description for the manifest")
	f.StringArrayVar(&opts.Objects, "object", nil, "extra object to compile and compare, e.g. fs/proc/base.o (needed for header changes); repeatable")
	f.BoolVar(&opts.NoReplace, "no-replace", false, "build a non-cumulative patch that stacks on the ones applied")
	f.BoolVar(&opts.AllowFuzz, "allow-fuzz", false, "accept a fix whose hunks apply only with fuzz (context lines that differ from this kernel's source); check each one the build names")
	f.BoolVar(&opts.NoVerify, "no-verify", false, "do not check that the unpatched source compiles to the code the distribution shipped")
	f.StringVar(&cumulative, "cumulative-with", "", "bundle this patch replaces: take its level + 1 and check nothing it patched is dropped")
	f.StringVarP(&out, "output", "o", "", "bundle file to write")
	f.StringVar(&keyFile, "key", "", "ed25519 private key to sign with (default: stent key generate's signing.key, made if missing)")
	f.BoolVar(&opts.KeepWork, "keep-work", false, "keep the work folder (objects, generated livepatch.c, module) in every case; without it only a compiler or linker error keeps it")
	f.StringVar(&opts.Effective, "effective-version", "", "package version the fix brings the kernel up to, reported by stent uname on patched hosts (e.g. 6.1.192-3)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// signingKey loads keyFile, or the default signing key, generating the
// default one when it does not exist yet.
func signingKey(keyFile string) (ed25519.PrivateKey, string, error) {
	if keyFile != "" {
		k, err := bundle.LoadPrivateKey(keyFile)
		return k, "", err
	}
	dir, err := defaultSigningDir()
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, "signing"+bundle.PrivateKeySuffix)
	k, err := bundle.LoadPrivateKey(path)
	if err == nil {
		return k, "", nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", err
	}
	kf, err := bundle.GenerateKey(dir, "signing", false)
	if err != nil {
		return nil, "", err
	}
	k, err = bundle.LoadPrivateKey(kf.Private)
	msg := fmt.Sprintf("build: made signing key %s (key id %s); copy %s into the trusted keys folder (/etc/stent/keys) of hosts", kf.Private, kf.ID, kf.Public)
	return k, msg, err
}

// buildCache is $STENT_CACHE, else the repository's .cache when run from a
// checkout, else $XDG_CACHE_HOME/stent. The kernel package fetcher reads
// STENT_CACHE, so it is set to the same folder.
func buildCache() (string, error) {
	dir, err := kpkg.CacheDir()
	if err != nil {
		base, uerr := os.UserCacheDir()
		if uerr != nil {
			return "", fmt.Errorf("find a cache folder: %w; set STENT_CACHE", err)
		}
		dir = filepath.Join(base, "stent")
	}
	if os.Getenv("STENT_CACHE") == "" {
		os.Setenv("STENT_CACHE", dir)
	}
	return dir, nil
}

func printBuild(w io.Writer, r buildResult) {
	kind := "cumulative (replaces earlier patches)"
	if !r.Replace {
		kind = "stacking"
	}
	fmt.Fprintf(w, "wrote %s: %s level %d for %s (%s), %s, signed by key %s\n", r.Bundle, r.Name, r.Level, r.Kernel.Release, r.Kernel.PackageVersion, kind, r.KeyID)
	for _, f := range r.Functions {
		pos := ""
		if f.Sympos > 0 {
			pos = fmt.Sprintf(",%d", f.Sympos)
		}
		fmt.Fprintf(w, "  patches %s:%s%s (%s)\n", f.Object, f.Name, pos, f.File)
	}
	if len(r.New) > 0 {
		fmt.Fprintf(w, "  new functions: %s\n", strings.Join(r.New, ", "))
	}
	for _, c := range r.Callbacks {
		fmt.Fprintf(w, "  %s callback of %s: %s (%s)\n", c.Kind, c.Object, c.Func, c.File)
	}
	if len(r.LineOnly) > 0 {
		fmt.Fprintf(w, "  unchanged but for __LINE__: %s\n", strings.Join(r.LineOnly, ", "))
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", wn)
	}
	var parts []string
	var total float64
	for _, s := range r.Steps {
		parts = append(parts, fmt.Sprintf("%s %.1fs", s.Name, s.Duration.Seconds()))
		total += s.Duration.Seconds()
	}
	fmt.Fprintf(w, "  time: %s (%.1fs)\n", strings.Join(parts, ", "), total)
	if r.WorkDir != "" {
		fmt.Fprintf(w, "  work folder: %s\n", r.WorkDir)
	}
}
