package patcher

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/stent-dev/stent/kinfo"
)

// Uname is what uname(1) prints for the effective kernel: the running
// kernel with its version moved to what the applied cumulative patch brings
// it up to, so scanners and inventory tools see the patched level.
type Uname struct {
	Sysname  string `json:"sysname"`
	Nodename string `json:"nodename"`
	Release  string `json:"release"`
	Version  string `json:"version"`
	Machine  string `json:"machine"`
	// PackageVersion is the effective distribution package version.
	PackageVersion string `json:"package_version,omitempty"`
	// PatchedBy names the live patch whose manifest set the effective
	// version; empty when no applied patch moves it.
	PatchedBy string `json:"patched_by,omitempty"`
	// Running is the real kernel's release and version, for reference.
	RunningRelease string `json:"running_release"`
	RunningVersion string `json:"running_version"`
}

// effective computes the effective uname from the running kernel and the
// patches that are enabled and out of transition: the one with the highest
// cumulative level whose manifest names an effective version wins.
func effective(k *kinfo.Kernel, patches []PatchStatus) *Uname {
	u := &Uname{Sysname: "Linux", Release: k.Release, Version: k.Version, PackageVersion: k.PackageVersion,
		RunningRelease: k.Release, RunningVersion: k.Version, Machine: machine()}
	var best *PatchStatus
	for i := range patches {
		p := &patches[i]
		if !p.Enabled || p.Transition || p.Record == nil || p.Record.Manifest == nil || p.Record.Manifest.Effective == nil {
			continue
		}
		if best == nil || p.Record.Manifest.Level > best.Record.Manifest.Level {
			best = p
		}
	}
	if best == nil {
		return u
	}
	eff := best.Record.Manifest.Effective
	u.PatchedBy = best.Name
	if eff.VersionString != "" {
		u.Version = eff.VersionString
	}
	if pv := eff.PackageVersion; pv != "" && k.PackageVersion != "" {
		if eff.VersionString == "" && strings.Contains(k.Version, k.PackageVersion) {
			// Debian: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)".
			u.Version = strings.Replace(k.Version, k.PackageVersion, pv, 1)
		}
		if strings.HasPrefix(k.Release, k.PackageVersion) {
			// RPM: "5.14.0-362.8.1.el9_3.x86_64" carries the package version.
			u.Release = pv + strings.TrimPrefix(k.Release, k.PackageVersion)
		}
		u.PackageVersion = pv
	}
	return u
}

// Uname returns the effective uname of the host.
func (rt *Runtime) Uname(ctx context.Context) (*Uname, error) {
	st, err := rt.Status(ctx)
	if err != nil {
		return nil, err
	}
	u := st.Effective
	if b, err := os.ReadFile(filepath.Join(rt.cfg.Root, "proc/sys/kernel/hostname")); err == nil {
		u.Nodename = strings.TrimSpace(string(b))
	}
	return u, nil
}

func machine() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	}
	return runtime.GOARCH
}
