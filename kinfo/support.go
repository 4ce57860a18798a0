package kinfo

import (
	"bufio"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Support says whether this kernel can be live patched, and if not, why.
type Support struct {
	Supported bool     `json:"supported"`
	Reasons   []string `json:"reasons,omitempty"` // why not, or warnings when supported
	Lockdown  string   `json:"lockdown,omitempty"`
}

// CheckSupport inspects the running kernel (release, under the filesystem
// root root) for live patching support.
func CheckSupport(root, release string) Support {
	s := Support{Supported: true}
	fail := func(why string) {
		s.Supported = false
		s.Reasons = append(s.Reasons, why)
	}
	if _, err := os.Stat(filepath.Join(root, "sys/kernel/livepatch")); err != nil {
		why := "no /sys/kernel/livepatch: the kernel was built without CONFIG_LIVEPATCH"
		if cfg, err := kernelConfig(root, release); err == nil {
			if v := cfg["CONFIG_LIVEPATCH"]; v != "y" {
				why = "CONFIG_LIVEPATCH is not set in the kernel config"
			} else {
				why = "no /sys/kernel/livepatch although CONFIG_LIVEPATCH=y (is sysfs mounted?)"
			}
		}
		fail(why)
	}
	if v, err := readTrim(root, "proc/sys/kernel/modules_disabled"); err == nil && v == "1" {
		fail("module loading is disabled (kernel.modules_disabled=1) until reboot")
	}
	if v, err := readTrim(root, "sys/kernel/security/lockdown"); err == nil {
		// "none [integrity] confidentiality": the bracketed word is active.
		if i := strings.Index(v, "["); i >= 0 {
			if j := strings.Index(v[i:], "]"); j > 0 {
				s.Lockdown = v[i+1 : i+j]
			}
		}
		if s.Lockdown != "" && s.Lockdown != "none" {
			s.Reasons = append(s.Reasons, "kernel lockdown is "+s.Lockdown+": only modules signed by a key the kernel trusts can be loaded")
		}
	}
	return s
}

// kernelConfig reads /proc/config.gz or /boot/config-RELEASE.
func kernelConfig(root, release string) (map[string]string, error) {
	var r io.Reader
	if f, err := os.Open(filepath.Join(root, "proc/config.gz")); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		r = zr
	} else if f, err := os.Open(filepath.Join(root, "boot", "config-"+release)); err == nil {
		defer f.Close()
		r = f
	} else {
		return nil, errors.New("no kernel config found")
	}
	cfg := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		}
	}
	return cfg, sc.Err()
}
