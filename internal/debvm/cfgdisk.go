package debvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// File is a file the config disk drops into the guest's file system at
// every boot (before the network and the guest's services start).
type File struct {
	Path string      // absolute path in the guest, e.g. /etc/stent/agent.json
	Data []byte      // contents (or HostPath)
	Host string      // a host file to copy instead of Data
	Mode fs.FileMode // permission bits; default 0644
}

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// writeConfigDisk builds the config disk image at img from cfg: an ext4 file
// system labelled debvmcfg made with mkfs.ext4 -d (no mount, no root).
func writeConfigDisk(ctx context.Context, img string, cfg Config, guestrun string) error {
	dir, err := os.MkdirTemp("", "debvm-cfg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	size := int64(32 << 20)
	write := func(rel string, data []byte, mode fs.FileMode) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		size += int64(len(data)) + 8<<10
		if err := os.WriteFile(p, data, mode); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
	copyIn := func(rel, host string, mode fs.FileMode) error {
		b, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		return write(rel, b, mode)
	}
	if err := copyIn("guestrun", guestrun, 0o755); err != nil {
		return fmt.Errorf("config disk: %w", err)
	}
	for i, f := range cfg.Files {
		if !filepath.IsAbs(f.Path) || filepath.Clean(f.Path) != f.Path || f.Path == "/" {
			return fmt.Errorf("debvm: Config.Files[%d].Path %q: want a clean absolute path", i, f.Path)
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		rel := filepath.Join("files", f.Path)
		if f.Host != "" {
			if err := copyIn(rel, f.Host, mode); err != nil {
				return fmt.Errorf("debvm: Config.Files[%d]: %w", i, err)
			}
		} else if err := write(rel, f.Data, mode); err != nil {
			return err
		}
	}
	for i, d := range cfg.Debs {
		if !strings.HasSuffix(d, ".deb") {
			return fmt.Errorf("debvm: Config.Debs[%d] %q: not a .deb file", i, d)
		}
		if err := copyIn(filepath.Join("debs", fmt.Sprintf("%02d-%s", i, filepath.Base(d))), d, 0o644); err != nil {
			return fmt.Errorf("debvm: Config.Debs[%d]: %w", i, err)
		}
	}
	if err := write("early.sh", []byte(earlyScript(cfg)), 0o755); err != nil {
		return err
	}
	if err := write("late.sh", []byte(lateScript(cfg)), 0o755); err != nil {
		return err
	}
	if cfg.BootScript != "" {
		if err := write("boot.sh", []byte(cfg.BootScript), 0o755); err != nil {
			return err
		}
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	err = f.Truncate((size + 1<<20 - 1) &^ (1<<20 - 1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "debvmcfg", "-d", dir, img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 -d for the config disk (install e2fsprogs): %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// shQuote quotes s for sh.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// machineID derives a stable machine-id from the host name, so hosts
// booted from one image differ.
func machineID(name string) string {
	h := sha256.Sum256([]byte("debvm machine " + name))
	return hex.EncodeToString(h[:16])
}

// earlyScript runs at every boot before the network (debvm-config.service).
func earlyScript(cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, `set -e
cfg=/run/debvm/cfg
name=%s
echo "$name" > /etc/hostname
hostname "$name"
printf '127.0.0.1 localhost\n127.0.1.1 %%s\n%%s host.debvm\n' "$name" %s > /etc/hosts
# Takes effect for systemd at the next boot; services started from now on read it.
echo %s > /etc/machine-id
mkdir -p /var/lib/debvm
`, shQuote(cfg.Name), GuestHost, machineID(cfg.Name))
	if cfg.Repo != "" {
		fmt.Fprintf(&b, "echo %s > /etc/apt/sources.list.d/debvm.list\n", shQuote(RepoSource))
	} else {
		b.WriteString("rm -f /etc/apt/sources.list.d/debvm.list\n")
	}
	if len(cfg.Files) > 0 {
		b.WriteString("cp -a \"$cfg/files/.\" /\n")
	}
	fmt.Fprintf(&b, "echo \"debvm: config applied on $name\" > /dev/console\n")
	return b.String()
}

// lateScript runs at every boot after network-online (debvm-late.service).
func lateScript(cfg Config) string {
	var b strings.Builder
	b.WriteString("set -e\ncfg=/run/debvm/cfg\nexport DEBIAN_FRONTEND=noninteractive\n")
	if len(cfg.Debs) > 0 {
		b.WriteString(`if [ ! -e /var/lib/debvm/debs-installed ]; then
	echo "debvm: installing $(ls $cfg/debs | tr '\n' ' ')" > /dev/console
	dpkg -i "$cfg"/debs/*.deb > /var/log/debvm-debs.log 2>&1 || { echo "debvm: dpkg -i failed: $(tail -5 /var/log/debvm-debs.log)" > /dev/console; exit 1; }
	touch /var/lib/debvm/debs-installed
fi
`)
	}
	if len(cfg.Units) > 0 {
		q := make([]string, len(cfg.Units))
		for i, u := range cfg.Units {
			q[i] = shQuote(u)
		}
		fmt.Fprintf(&b, "systemctl daemon-reload\nsystemctl enable --now --no-block %s\n", strings.Join(q, " "))
	}
	if cfg.BootScript != "" {
		b.WriteString("/bin/sh \"$cfg/boot.sh\" > /var/log/debvm-boot.log 2>&1 || echo \"debvm: boot script failed ($?)\" > /dev/console\n")
	}
	// A runtime unit whose stop marks the start of a shutdown on the console.
	b.WriteString(`mkdir -p /run/systemd/system
cat > /run/systemd/system/debvm-down.service <<'UNIT'
[Unit]
Description=debvm: mark the start of a shutdown on the console
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/sh -c 'echo "debvm: $(hostname) going down" > /dev/console'
UNIT
systemctl daemon-reload
systemctl start --no-block debvm-down.service
`)
	b.WriteString("echo \"debvm: $(hostname) up on $(uname -r)\" > /dev/console\n")
	return b.String()
}
