package pkgbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// Paths the packages install to, the same as `make install`'s.
const (
	UnitDir        = "/lib/systemd/system"
	KeysDir        = "/etc/stent/keys"
	HostBin        = "/usr/sbin/stent"
	ToolsBin       = "/usr/lib/stent/stent-tools"
	ServerBin      = "/usr/bin/stent-server"
	ServerDefaults = "/etc/default/stent-server"
	AgentDefaults  = "/etc/default/stent-agent"
)

const (
	maintainer = "Stent developers <stent-dev@users.noreply.github.com>"
	homepage   = "https://github.com/stent-dev/stent"
)

// spec is one package: its files and scripts, for every format.
type spec struct {
	name, summary, description string
	contents                   files.Contents
	scripts                    map[string]nfpm.Scripts // per format
	debDepends, recommends     []string
	version                    string
}

func (s spec) info(format string) *nfpm.Info {
	contents := make(files.Contents, len(s.contents))
	for i, c := range s.contents {
		cc := *c
		fi := *c.FileInfo
		cc.FileInfo = &fi
		contents[i] = &cc
	}
	info := &nfpm.Info{
		Name:          s.name,
		Arch:          runtime.GOARCH,
		Platform:      "linux",
		Version:       s.version,
		VersionSchema: "none",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    maintainer,
		Vendor:        "Stent",
		Homepage:      homepage,
		Description:   s.summary + "\n" + s.description,
		Overridables: nfpm.Overridables{
			Contents:   contents,
			Scripts:    s.scripts[format],
			Recommends: s.recommends,
			RPM:        nfpm.RPM{Summary: s.summary, Group: "System Environment/Daemons"},
		},
	}
	if format == "deb" {
		info.Depends = s.debDepends
	}
	return nfpm.WithDefaults(info)
}

// packageSpecs lays out both packages from the source tree src and the
// binaries in bin, checking that every input exists.
func packageSpecs(src, bin, version string) ([]spec, error) {
	var missing []string
	need := func(p string) string {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			missing = append(missing, p)
		}
		return p
	}

	units, err := filepath.Glob(filepath.Join(src, "deploy", "systemd", "stent-*"))
	if err != nil {
		return nil, err
	}
	var hostUnits, serverUnits files.Contents
	for _, u := range units {
		base := filepath.Base(u)
		if !strings.HasSuffix(base, ".service") && !strings.HasSuffix(base, ".timer") {
			continue
		}
		c := file(u, UnitDir+"/"+base, 0o644)
		if base == "stent-server.service" {
			serverUnits = append(serverUnits, c)
		} else {
			hostUnits = append(hostUnits, c)
		}
	}
	if len(hostUnits) == 0 || len(serverUnits) == 0 {
		return nil, fmt.Errorf("pkgbuild: %s has no stent units", filepath.Join(src, "deploy", "systemd"))
	}

	docs, err := filepath.Glob(filepath.Join(src, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	docs = append([]string{filepath.Join(src, "README.md")}, docs...)
	slices.Sort(docs[1:])
	var docContents files.Contents
	for _, d := range docs {
		docContents = append(docContents, file(need(d), "/usr/share/doc/stent/"+filepath.Base(d), 0o644))
	}

	pkgDir := filepath.Join(src, "deploy", "package")
	scripts := func(name string) map[string]nfpm.Scripts {
		return map[string]nfpm.Scripts{
			"deb": {
				PostInstall: need(filepath.Join(pkgDir, "deb", name+".postinst")),
				PreRemove:   need(filepath.Join(pkgDir, "deb", name+".prerm")),
				PostRemove:  need(filepath.Join(pkgDir, "deb", name+".postrm")),
			},
			"rpm": {
				PostInstall: need(filepath.Join(pkgDir, "rpm", name+".post")),
				PreRemove:   need(filepath.Join(pkgDir, "rpm", name+".preun")),
				PostRemove:  need(filepath.Join(pkgDir, "rpm", name+".postun")),
			},
		}
	}

	host := spec{
		name:    Host,
		version: version,
		summary: "Stent live patching runtime and fleet agent for Linux hosts",
		description: "stent loads signed kernel live patches, re-applies persisted ones at\n" +
			"boot with a crash-loop guard, and runs the fleet agent that keeps a\n" +
			"host's patches as stent-server wants. The agent's unit is enabled and\n" +
			"starts once the host is enrolled.",
		contents: append(files.Contents{
			file(need(filepath.Join(bin, "stent")), HostBin, 0o755),
			file(need(filepath.Join(bin, "stent-tools")), ToolsBin, 0o755),
			dir("/etc/stent", 0o755),
			dir(KeysDir, 0o755),
			conffile(need(filepath.Join(pkgDir, "stent-agent.default")), AgentDefaults, 0o644),
		}, append(hostUnits, docContents...)...),
		scripts: scripts(Host),
		// The maintainer scripts enable units with deb-systemd-helper.
		debDepends: []string{"init-system-helpers"},
	}
	server := spec{
		name:    Server,
		version: version,
		summary: "Stent control server: enrollment, publishing and staged rollouts",
		description: "stent-server serves the Stent fleet API over HTTPS: it enrolls hosts,\n" +
			"takes published live patch bundles and rolls them out in waves. The\n" +
			"admin commands (stent fleet, stent publish) and the docs are in the\n" +
			"stent package.",
		contents: append(files.Contents{
			file(need(filepath.Join(bin, "stent-server")), ServerBin, 0o755),
			conffile(need(filepath.Join(pkgDir, "stent-server.default")), ServerDefaults, 0o644),
		}, serverUnits...),
		scripts:    scripts(Server),
		debDepends: []string{"init-system-helpers"},
		recommends: []string{Host},
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("pkgbuild: missing %s (make build puts the binaries in bin/)", strings.Join(missing, ", "))
	}
	return []spec{host, server}, nil
}
