package vmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stent-dev/stent/internal/safeelf"
)

// bootModules are the image's modules every guest loads: the virtio-serial
// port of the control channel (virtio and virtio_console are =m in
// Debian's 6.1 config; 8250, devtmpfs, tmpfs and livepatch are built in).
var bootModules = []string{"virtio_pci", "virtio_console"}

// diskModules are loaded when the guest has a disk: virtio_blk and ext4.
// crc32c_generic provides the crc32c that ext4's metadata checksums (on by
// default in mkfs.ext4) ask for at mount time, when no modprobe helper
// could load it on demand.
var diskModules = []string{"virtio_blk", "crc32c_generic", "ext4"}

// netModules are loaded when the guest has forwards to the host: virtio_net
// (with its failover dependencies).
var netModules = []string{"virtio_net"}

// modName normalises a module name as the kernel does ('-' and '_' are the
// same).
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// moduleIndex maps module names to paths relative to modulesDir, from
// modules.order.
func moduleIndex(modulesDir string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(modulesDir, "modules.order"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel := strings.TrimSpace(sc.Text())
		if rel == "" {
			continue
		}
		idx[modName(rel)] = rel
	}
	return idx, sc.Err()
}

// modinfoDepends returns the "depends=" list of the .ko file at path.
func modinfoDepends(path string) (deps []string, err error) {
	f, err := safeelf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("read %s: no .modinfo section", path)
	}
	data, err := f.SectionData(sec)
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, modName(d))
				}
			}
		}
	}
	return deps, nil
}

// resolveModules returns the paths (relative to modulesDir) of the named
// modules and everything they depend on, each after its dependencies, and
// the modules.dep lines for them.
func resolveModules(modulesDir string, names []string) (order []string, dep map[string][]string, err error) {
	idx, err := moduleIndex(modulesDir)
	if err != nil {
		return nil, nil, err
	}
	dep = map[string][]string{}
	state := map[string]int{} // 1: visiting, 2: done
	directDeps := map[string][]string{}
	var visit func(name string, chain []string) ([]string, error)
	// visit returns the full (transitive) dependency list of name, as paths.
	visit = func(name string, chain []string) ([]string, error) {
		rel, ok := idx[name]
		if !ok {
			return nil, fmt.Errorf("module %s (needed by %v) is not in %s/modules.order; is it built in? check the kernel config", name, chain, modulesDir)
		}
		switch state[name] {
		case 1:
			return nil, fmt.Errorf("module dependency loop through %s: %v", name, chain)
		case 2:
			return dep[rel], nil
		}
		state[name] = 1
		direct, err := modinfoDepends(filepath.Join(modulesDir, rel))
		if err != nil {
			return nil, err
		}
		for _, d := range direct {
			if _, err := visit(d, append(chain, name)); err != nil {
				return nil, err
			}
		}
		// modprobe loads a module's list from its end: every module must
		// come before all of its own dependencies (nfsd: lockd before
		// sunrpc, which lockd and auth_rpcgss both need). A post-order walk
		// lists dependencies first; reversed, it is that order.
		var post []string
		seen := map[string]bool{}
		var walk func(rel string)
		walk = func(p string) {
			if seen[p] {
				return
			}
			seen[p] = true
			for _, d := range directDeps[p] {
				walk(d)
			}
			post = append(post, p)
		}
		for _, d := range direct {
			walk(idx[d])
		}
		all := make([]string, 0, len(post))
		for i := len(post) - 1; i >= 0; i-- {
			all = append(all, post[i])
		}
		for _, d := range direct {
			directDeps[rel] = append(directDeps[rel], idx[d])
		}
		state[name] = 2
		dep[rel] = all
		order = append(order, rel)
		return all, nil
	}
	for _, n := range names {
		if _, err := visit(modName(n), nil); err != nil {
			return nil, nil, err
		}
	}
	return order, dep, nil
}

// modulesDep renders modules.dep for the resolved modules, in the format
// modprobe reads: "kernel/a.ko: kernel/b.ko kernel/c.ko".
func modulesDep(order []string, dep map[string][]string) []byte {
	var b bytes.Buffer
	for _, rel := range order {
		b.WriteString(rel + ":")
		for _, d := range dep[rel] {
			b.WriteString(" " + d)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}
