// Command mkpkg writes Stent's .deb and .rpm packages (see package
// pkgbuild and docs/packaging.md). `make package` runs it:
//
//	go run ./internal/tools/mkpkg --bin bin --out dist --version "$(git describe --tags --always --dirty)"
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/stent-dev/stent/internal/pkgbuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkpkg: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts pkgbuild.Options
	var formats string
	var asJSON bool
	fs.StringVar(&opts.OutDir, "out", "dist", "folder the packages are written to")
	fs.StringVar(&opts.BinDir, "bin", "", "folder with stent, stent-tools and stent-server (empty: go build them)")
	fs.StringVar(&opts.SrcDir, "src", ".", "repository root (README.md, docs/, deploy/)")
	fs.StringVar(&opts.Version, "version", "", "git describe output or a version such as 1.2.3 (empty: git describe)")
	fs.StringVar(&formats, "formats", strings.Join(pkgbuild.Formats, ","), "package formats, comma-separated")
	fs.BoolVar(&asJSON, "json", false, "print the written packages as JSON")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: mkpkg [flags]

Writes the stent (host: runtime, agent, units, /etc/stent/keys) and
stent-server packages as .deb and .rpm into --out, with the binaries of
--bin laid out as make install does. See docs/packaging.md.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	if formats != "" {
		opts.Formats = strings.Split(formats, ",")
	}
	res, err := pkgbuild.Build(ctx, opts)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, p := range res.Packages {
		fmt.Fprintln(stdout, p.Path)
	}
	return nil
}
