package collect

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/stent-dev/stent/inventory"
)

// staleProcesses finds processes that map deleted or replaced libraries
// and executables, from /proc/PID/maps. A file is "deleted" when the kernel
// says so and "replaced" when the path now names another inode (a package
// update that renamed a new file over it). The count of processes that
// could not be read is returned for a warning.
func staleProcesses(root string) ([]inventory.Process, int, error) {
	proc := filepath.Join(root, "proc")
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, 0, fmt.Errorf("list processes: %w", err)
	}
	var out []inventory.Process
	unreadable := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(proc, e.Name(), "maps"))
		if err != nil {
			if !os.IsNotExist(err) { // a process that exited is no error
				unreadable++
			}
			continue
		}
		libs := staleMappings(root, data)
		if len(libs) == 0 {
			continue
		}
		p := inventory.Process{PID: pid, Libraries: libs}
		if b, err := os.ReadFile(filepath.Join(proc, e.Name(), "comm")); err == nil {
			p.Comm = strings.TrimSpace(string(b))
		}
		if b, err := os.ReadFile(filepath.Join(proc, e.Name(), "cgroup")); err == nil {
			p.Unit = unitOf(b)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, unreadable, nil
}

// staleMappings returns the deleted or replaced files a maps file names,
// each once: "path (deleted)" or "path (replaced)".
func staleMappings(root string, maps []byte) []string {
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		// address perms offset dev inode path
		f := strings.SplitN(sc.Text(), " ", 6)
		if len(f) < 6 {
			continue
		}
		path := strings.TrimLeft(f[5], " ")
		if !strings.HasPrefix(path, "/") || !isCodePath(path) {
			continue
		}
		var entry string
		if p, ok := strings.CutSuffix(path, " (deleted)"); ok {
			entry = p + " (deleted)"
		} else {
			inode, err := strconv.ParseUint(f[4], 10, 64)
			if err != nil || inode == 0 {
				continue
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(root, path), &st); err != nil {
				continue // not visible from here: no claim either way
			}
			if st.Ino == inode && devMatches(f[3], st.Dev) {
				continue
			}
			entry = path + " (replaced)"
		}
		if !seen[entry] {
			seen[entry] = true
			out = append(out, entry)
		}
	}
	sort.Strings(out)
	return out
}

// isCodePath tells whether a mapped path is a library or executable whose
// replacement calls for a restart (not a deleted temporary file, a memfd,
// shared memory or a locale archive).
func isCodePath(p string) bool {
	p = strings.TrimSuffix(p, " (deleted)")
	if strings.HasPrefix(p, "/dev/") || strings.HasPrefix(p, "/memfd:") || strings.HasPrefix(p, "/SYSV") || strings.HasPrefix(p, "/tmp/") || strings.HasPrefix(p, "/var/") || strings.HasPrefix(p, "/run/") {
		return false
	}
	base := filepath.Base(p)
	return strings.Contains(base, ".so") || strings.HasPrefix(p, "/usr/bin/") || strings.HasPrefix(p, "/usr/sbin/") || strings.HasPrefix(p, "/bin/") || strings.HasPrefix(p, "/sbin/") || strings.HasPrefix(p, "/usr/libexec/") || strings.HasPrefix(p, "/usr/lib/systemd/")
}

// devMatches compares a maps "major:minor" (hex) with a stat device number.
func devMatches(mapsDev string, dev uint64) bool {
	maj, min, ok := strings.Cut(mapsDev, ":")
	if !ok {
		return true
	}
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(min, 16, 32)
	if err1 != nil || err2 != nil {
		return true
	}
	// Linux's dev_t encoding, as unix.Major/unix.Minor decode it.
	gotMaj := ((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0x00000fff)
	gotMin := ((dev >> 12) & 0xffffff00) | (dev & 0x000000ff)
	return ma == gotMaj && mi == gotMin
}

// unitOf returns the systemd unit of a process from /proc/PID/cgroup
// ("0::/system.slice/nginx.service" → "nginx.service"), or "".
func unitOf(cgroup []byte) string {
	for _, line := range strings.Split(string(cgroup), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || (f[0] != "0" && !strings.Contains(f[1], "name=systemd")) {
			continue
		}
		parts := strings.Split(f[2], "/")
		for i := len(parts) - 1; i >= 0; i-- {
			if strings.HasSuffix(parts[i], ".service") || strings.HasSuffix(parts[i], ".scope") {
				return parts[i]
			}
		}
	}
	return ""
}
