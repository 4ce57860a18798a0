package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A keys folder or key file that others could write would let them make
// stent (root) trust their key: LoadKeyring refuses it, naming the file and
// its mode or owner, as sshd's StrictModes does.
func TestLoadKeyringUnsafe(t *testing.T) {
	setup := func(t *testing.T) (dir, pub string) {
		dir = filepath.Join(t.TempDir(), "keys")
		kf, err := GenerateKey(dir, "k", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeyring(dir); err != nil {
			t.Fatalf("LoadKeyring(safe folder) = %v", err)
		}
		return dir, kf.Public
	}
	tests := []struct {
		name  string
		prep  func(t *testing.T, dir, pub string) string // returns the path the error must name
		wants []string
	}{
		{"world-writable folder", func(t *testing.T, dir, pub string) string {
			mustChmod(t, dir, 0o777)
			return dir
		}, []string{"mode 0777", "chmod go-w"}},
		{"sticky world-writable folder", func(t *testing.T, dir, pub string) string {
			mustChmod(t, dir, 0o1777)
			return dir
		}, []string{"mode 0777"}},
		{"group-writable folder", func(t *testing.T, dir, pub string) string {
			mustChmod(t, dir, 0o775)
			return dir
		}, []string{"mode 0775"}},
		{"group-writable key", func(t *testing.T, dir, pub string) string {
			mustChmod(t, pub, 0o664)
			return pub
		}, []string{"mode 0664"}},
		{"world-writable folder above", func(t *testing.T, dir, pub string) string {
			mustChmod(t, filepath.Dir(dir), 0o777)
			return filepath.Dir(dir)
		}, []string{"mode 0777"}},
		{"key linked from a world-writable folder", func(t *testing.T, dir, pub string) string {
			other := filepath.Join(t.TempDir(), "drop")
			if err := os.Mkdir(other, 0o777); err != nil {
				t.Fatal(err)
			}
			mustChmod(t, other, 0o777)
			target := filepath.Join(other, "k.pub")
			if err := os.Rename(pub, target); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, pub); err != nil {
				t.Fatal(err)
			}
			return other
		}, []string{"mode 0777"}},
	}
	if os.Getuid() == 0 {
		tests = append(tests, struct {
			name  string
			prep  func(t *testing.T, dir, pub string) string
			wants []string
		}{"key of another user", func(t *testing.T, dir, pub string) string {
			if err := os.Chown(pub, 12345, 12345); err != nil {
				t.Fatal(err)
			}
			return pub
		}, []string{"owned by uid 12345", "not by root or the running user (uid 0)"}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, pub := setup(t)
			named := tt.prep(t, dir, pub)
			_, err := LoadKeyring(dir)
			if !errors.Is(err, ErrUnsafeKeyPath) {
				t.Fatalf("LoadKeyring = %v, want ErrUnsafeKeyPath", err)
			}
			for _, w := range append(tt.wants, named) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("LoadKeyring = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// Without root, a file of another user is checked through the running
// user's uid: a file owned by uid u is refused when stent runs as u+1.
func TestCheckTrustedPathOwner(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k.pub")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	uid := os.Getuid()
	if err := checkTrustedPathAs(p, uid); err != nil {
		t.Errorf("checkTrustedPathAs(own file) = %v", err)
	}
	if uid == 0 {
		if err := os.Chown(p, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		uid = 4242
	}
	if err := checkTrustedPathAs(p, uid+1); !errors.Is(err, ErrUnsafeKeyPath) || !strings.Contains(err.Error(), "owned by uid") {
		t.Errorf("checkTrustedPathAs(file of another user) = %v, want ErrUnsafeKeyPath naming the owner", err)
	}
}

func mustChmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	m := mode.Perm()
	if mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

// GenerateKey refuses an existing folder others may write to: they could
// swap the key pair between its writing and its use.
func TestGenerateKeyUnsafeFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustChmod(t, dir, 0o1777)
	_, err := GenerateKey(dir, "k", false)
	if !errors.Is(err, ErrUnsafeKeyPath) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "mode 0777") {
		t.Fatalf("GenerateKey(world-writable folder) = %v, want ErrUnsafeKeyPath naming %s and its mode", err, dir)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("GenerateKey(world-writable folder) left %v", ents)
	}
	mustChmod(t, dir, 0o700)
	if _, err := GenerateKey(dir, "k", false); err != nil {
		t.Errorf("GenerateKey(private folder) = %v", err)
	}
}
