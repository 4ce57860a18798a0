package factory

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"

	"github.com/stent-dev/stent/vuln"
)

// ArchiveUploads returns the versions of linux-source-<series> the
// distribution archive apt is configured for carries, newest first
// (apt-cache madison; run apt-get update first to see a new upload).
func ArchiveUploads(ctx context.Context, series string) ([]string, error) {
	pkg := "linux-source-" + series
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-cache", "madison", pkg)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("apt-cache madison %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	vs := parseMadison(out.String(), pkg)
	if len(vs) == 0 {
		return nil, fmt.Errorf("the archive has no %s (is apt configured for the distribution's security archive? run apt-get update)", pkg)
	}
	return vs, nil
}

// parseMadison reads apt-cache madison lines, "pkg | version | source",
// into the package's versions, newest first, without duplicates.
func parseMadison(out, pkg string) []string {
	seen := map[string]bool{}
	var vs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) < 3 || strings.TrimSpace(f[0]) != pkg {
			continue
		}
		v := strings.TrimSpace(f[1])
		if vuln.ValidateVersion(vuln.SchemeDeb, v) == nil && !seen[v] {
			seen[v] = true
			vs = append(vs, v)
		}
	}
	sort.Slice(vs, func(i, j int) bool { return cmpDeb(vs[i], vs[j]) > 0 })
	return vs
}
