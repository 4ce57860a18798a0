package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUnsafeKeyPath: a trusted keys folder, a key file in it, or a folder
// above them could be written by someone other than root and the running
// user, who could then make stent trust their own key.
var ErrUnsafeKeyPath = errors.New("unsafe trusted keys")

// checkTrustedPath refuses path (a trusted keys folder or key file) unless
// it and every folder above it, as sshd's StrictModes asks of
// authorized_keys, is owned by root or the running user and writable by
// nobody else. One exception for the folders above: a folder writable by
// all with the sticky bit and owned by root (/tmp) lets nobody else rename
// or replace what the owner put in it, so it is accepted there (never for
// the keys folder itself, where others could add a key). Symbolic links are
// followed and the folders above their targets checked.
func checkTrustedPath(path string) error {
	return checkTrustedPathAs(path, os.Getuid())
}

func checkTrustedPathAs(path string, uid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	for p, first := real, true; ; first = false {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := checkOwnerMode(path, p, st, uid, first); err != nil {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

func checkOwnerMode(given, p string, st fs.FileInfo, uid int, strict bool) error {
	what := p
	if p != given {
		what = fmt.Sprintf("%s (holding %s)", p, given)
		if strict {
			what = fmt.Sprintf("%s (%s)", given, p)
		}
	}
	owner := -1
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		owner = int(sys.Uid)
	}
	if owner != 0 && owner != uid {
		return fmt.Errorf("%w: %s is owned by uid %d, not by root or the running user (uid %d): give it to root (chown root %s) or remove it",
			ErrUnsafeKeyPath, what, owner, uid, p)
	}
	perm := st.Mode()
	if perm.Perm()&0o022 == 0 {
		return nil
	}
	if !strict && st.IsDir() && perm&fs.ModeSticky != 0 && owner == 0 {
		return nil // /tmp: others may add their own entries, not replace ours
	}
	return fmt.Errorf("%w: %s has mode %04o: group or others may write it, and so make stent trust their key; make it writable by its owner only (chmod go-w %s)",
		ErrUnsafeKeyPath, what, perm.Perm(), p)
}
