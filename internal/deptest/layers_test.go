package deptest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/stent-dev/stent/"

// Why a dependency is kept out: named once, quoted in every failure.
var (
	runtimePkgs = map[string]string{
		mod + "patcher":           "the live patch runtime (apply, revert, module loading)",
		mod + "kmod":              "kernel module syscalls",
		mod + "klp":               "the livepatch sysfs interface",
		mod + "kinfo":             "reads the running kernel from /proc and /sys",
		mod + "inventory/collect": "reads a host; only stent inventory and stent agent collect",
	}
	unixPkg = map[string]string{
		"golang.org/x/sys/unix": "raw syscalls belong to the host runtime",
	}
	sqlPkgs = map[string]string{
		"modernc.org/sqlite":      "the SQLite driver (a large transpiled C library) belongs to the server's store and the rpmdb reader",
		"github.com/jackc/pgx/v5": "the PostgreSQL driver belongs to the server's store",
	}
	serverPkgs = map[string]string{
		mod + "server": "the control server is its own binary, stent-server",
		mod + "store":  "the control server's database",
	}
	httpPkgs = map[string]string{
		"net/http": "no network code where nothing talks to a network",
	}
)

// join merges reason maps into one.
func join(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// except returns m without the named keys: what a package may link after
// all, each with its reason in the table's comment.
func except(m map[string]string, keys ...string) map[string]string {
	out := join(m)
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			panic("except: " + k + " is not in the list")
		}
		delete(out, k)
	}
	return out
}

// layers is, for each package or binary, what it must not link, and
// whether it must link nothing else of this module (a leaf).
var layers = []struct {
	pkg  string
	bad  map[string]string
	leaf bool
}{
	// The inventory types: read by the feeds, the planner and the server,
	// so they import nothing at all of Stent's.
	{pkg: "inventory", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs, httpPkgs), leaf: true},
	// The ELF differ is pure parsing of the builder's object files; it
	// reads them through internal/safeelf, a leaf itself (see leafOK).
	{pkg: "elfdiff", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs, httpPkgs), leaf: true},
	// debug/elf with its panics recovered, and flock(2) through package
	// syscall: the standard library only, so any layer may use them.
	{pkg: "internal/safeelf", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs, httpPkgs), leaf: true},
	{pkg: "internal/flock", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs, httpPkgs), leaf: true},
	// Bundles are verified by the host binary, which links no HTTP.
	{pkg: "bundle", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs, httpPkgs)},
	// The wire types and client of the admin and agent APIs (net/http is
	// theirs).
	{pkg: "api", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs)},
	// Feeds are downloaded (net/http) and parsed; plans are pure.
	{pkg: "vuln", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs)},
	{pkg: "policy", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs)},
	// The builder's output is a pure function of its inputs; it never
	// touches the running kernel. (internal/kpkg takes flock(2) on the
	// shared download cache, so that two builds do not unpack the same
	// kernel at once, through internal/flock: package syscall, not
	// x/sys/unix.)
	{pkg: "build", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs)},
	// The patch factory is a worker beside the builder: it talks to the
	// server through its API (package api), never through its database,
	// and never touches the kernel it runs on.
	{pkg: "factory", bad: join(runtimePkgs, unixPkg, sqlPkgs, serverPkgs)},
	// The store is the server's SQLite and PostgreSQL database: the
	// drivers are its own (and they link x/sys/unix).
	{pkg: "store", bad: runtimePkgs},
	// The control server plans fleets and stores inventories, and never
	// touches its own kernel. It links the store's drivers, and x/sys/unix
	// through them (modernc.org/libc) and through Prometheus's process
	// collector (prometheus/procfs).
	{pkg: "server", bad: join(runtimePkgs, map[string]string{mod + "agent": "the host agent runs on hosts, not in the server"})},
	{pkg: "cmd/stent-server", bad: join(runtimePkgs, map[string]string{mod + "agent": "the host agent runs on hosts, not in the server"})},
	// The agent runs on every host beside the runtime: no server code.
	{pkg: "agent", bad: join(sqlPkgs, serverPkgs)},
	// stent-tools: every subcommand but the runtime's; the server and its
	// drivers are stent-server's. (It links SQLite: collect reads the
	// rpmdb with it.)
	{pkg: "cmd/stent-tools", bad: join(serverPkgs, except(sqlPkgs, "modernc.org/sqlite"))},
	// The host binary links the live patch runtime only. What would make
	// every stent apply start slower is named here, so that adding it
	// back is a decision, not an accident (docs/benchmarks.md).
	{pkg: "cmd/stent", bad: join(sqlPkgs, serverPkgs, map[string]string{
		mod + "agent":             "stent agent is a stent-tools subcommand",
		mod + "build":             "stent build is a stent-tools subcommand",
		mod + "elfdiff":           "stent build is a stent-tools subcommand",
		mod + "policy":            "stent plan is a stent-tools subcommand",
		mod + "vuln":              "stent plan is a stent-tools subcommand",
		mod + "inventory":         "stent inventory is a stent-tools subcommand",
		mod + "inventory/collect": "stent inventory is a stent-tools subcommand",
		mod + "api":               "the fleet commands are stent-tools subcommands",
		"github.com/prometheus/client_golang/prometheus": "metrics are the agent's",
		"net/http":    "nothing in the host runtime talks to a network",
		"crypto/tls":  "nothing in the host runtime talks to a network",
		"crypto/x509": "nothing in the host runtime talks to a network",
	})},
}

// leafOK is what a leaf may import of Stent's after all: leaves themselves
// that link the standard library only, each with its reason.
var leafOK = map[string]string{
	mod + "internal/safeelf": "debug/elf behind recover, for every reader of outside ELF",
}

// TestLayers: no package or binary of the table links what it must not,
// through any chain of imports (test files aside).
func TestLayers(t *testing.T) {
	deps := listDeps(t)
	for _, l := range layers {
		pkg := mod + l.pkg
		d, ok := deps[pkg]
		if !ok {
			t.Errorf("%s: not in go list's output: a package renamed or removed? update the table", pkg)
			continue
		}
		if len(d.Deps) < 5 {
			t.Errorf("%s: go list printed only %d dependencies: %q", pkg, len(d.Deps), d.Deps)
		}
		for _, dep := range d.Deps {
			if why, bad := l.bad[dep]; bad {
				t.Errorf("%s links %s (%s); import chain: %s", l.pkg, dep, why, chain(deps, pkg, dep))
			}
			if l.leaf && strings.HasPrefix(dep, mod) && leafOK[dep] == "" {
				t.Errorf("%s links %s: it is a leaf and imports nothing of Stent's; import chain: %s", l.pkg, dep, chain(deps, pkg, dep))
			}
		}
	}
}

// importers is who may import a host-only package directly.
var importers = map[string][]string{
	// Collecting an inventory reads the host: stent inventory and the
	// agent's check-ins (both in internal/cli) only.
	"inventory/collect": {"internal/cli"},
}

// TestImporters: the host-only packages of importers are imported by the
// packages named there and no other.
func TestImporters(t *testing.T) {
	deps := listDeps(t)
	for target, allowed := range importers {
		var got []string
		for path, p := range deps {
			if strings.HasPrefix(path, mod) && slices.Contains(p.Imports, mod+target) {
				got = append(got, strings.TrimPrefix(path, mod))
			}
		}
		for _, g := range got {
			if !slices.Contains(allowed, g) {
				t.Errorf("%s imports %s; only %s may", g, target, strings.Join(allowed, ", "))
			}
		}
		if len(got) == 0 {
			t.Errorf("nothing imports %s: a package renamed? update the table", target)
		}
	}
}

// TestMainsInPlace: the shipped binaries are under cmd/, the programs that
// are not (demo, benchmarks, packaging, the QEMU guests' command runner)
// under internal/tools/, and no package main lives anywhere else.
func TestMainsInPlace(t *testing.T) {
	n := 0
	for path, p := range listDeps(t) {
		if p.Name != "main" || !strings.HasPrefix(path, mod) {
			continue
		}
		n++
		rel := strings.TrimPrefix(path, mod)
		if !strings.HasPrefix(rel, "cmd/") && !strings.HasPrefix(rel, "internal/tools/") {
			t.Errorf("%s is a package main outside cmd/ (shipped binaries) and internal/tools/ (the others): move it", rel)
		}
	}
	if n < 3 {
		t.Errorf("go list named %d packages main, want at least stent, stent-tools and stent-server", n)
	}
}

type pkgDeps struct {
	ImportPath string
	Name       string
	Imports    []string
	Deps       []string
}

// listDeps runs go list on the whole module and returns every package it
// names, with its direct imports and its transitive dependencies.
func listDeps(t *testing.T) map[string]*pkgDeps {
	t.Helper()
	cmd := exec.Command(goTool(), "list", "-deps", "-json=ImportPath,Name,Imports,Deps", mod+"...")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	deps := map[string]*pkgDeps{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkgDeps
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		deps[p.ImportPath] = &p
	}
	return deps
}

// chain returns one import path from pkg to dep, "a -> b -> c", to say
// where a leak comes from.
func chain(deps map[string]*pkgDeps, pkg, dep string) string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == dep {
			var path []string
			for p := dep; p != ""; p = prev[p] {
				path = append([]string{strings.TrimPrefix(p, mod)}, path...)
			}
			return strings.Join(path, " -> ")
		}
		p, ok := deps[cur]
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	return pkg + " -> ? -> " + dep
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
