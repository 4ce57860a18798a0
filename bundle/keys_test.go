package bundle

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
)

func TestGenerateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "signing")
	kf, err := GenerateKey(dir, "ci", false)
	if err != nil {
		t.Fatalf("GenerateKey() = %v", err)
	}
	if kf.Private != filepath.Join(dir, "ci.key") || kf.Public != filepath.Join(dir, "ci.pub") {
		t.Errorf("GenerateKey() wrote %s and %s, want ci.key and ci.pub in %s", kf.Private, kf.Public, dir)
	}
	for path, want := range map[string]fs.FileMode{kf.Private: 0o600, kf.Public: 0o644, dir: 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	priv, err := LoadPrivateKey(kf.Private)
	if err != nil {
		t.Fatalf("LoadPrivateKey() = %v", err)
	}
	pub, err := LoadPublicKey(kf.Public)
	if err != nil {
		t.Fatalf("LoadPublicKey() = %v", err)
	}
	if !pub.Equal(priv.Public()) {
		t.Errorf("the .pub file does not hold the .key file's public key")
	}
	if KeyIDOf(pub) != kf.ID {
		t.Errorf("GenerateKey().ID = %s, want %s", kf.ID, KeyIDOf(pub))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("%s holds %d files, want 2 (temporary files left behind?)", dir, len(ents))
	}

	// No overwriting without asking.
	before, _ := os.ReadFile(kf.Private)
	if _, err := GenerateKey(dir, "ci", false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GenerateKey(existing) = %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(kf.Private); string(after) != string(before) {
		t.Errorf("GenerateKey(existing) changed %s", kf.Private)
	}
	os.Remove(kf.Private) // a lone .pub also blocks
	if _, err := GenerateKey(dir, "ci", false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GenerateKey(existing .pub) = %v, want fs.ErrExist", err)
	}
	kf2, err := GenerateKey(dir, "ci", true)
	if err != nil {
		t.Fatalf("GenerateKey(overwrite) = %v", err)
	}
	if kf2.ID == kf.ID {
		t.Errorf("GenerateKey(overwrite) kept the old key")
	}

	for _, name := range []string{"", ".hidden", "a/b", "../x", strings.Repeat("a", 65), "sp ace"} {
		if _, err := GenerateKey(dir, name, false); err == nil {
			t.Errorf("GenerateKey(name %q) = nil error, want an error", name)
		}
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	a, err := GenerateKey(dir, "a", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey(dir, "b", false)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(a.Private)
	os.Remove(b.Private)
	// Ignored: other suffixes, dot files.
	os.WriteFile(filepath.Join(dir, "README"), []byte("trusted keys"), 0o644)
	os.WriteFile(filepath.Join(dir, ".c.pub"), []byte("editor junk"), 0o644)
	// The same key twice is harmless.
	data, _ := os.ReadFile(a.Public)
	os.WriteFile(filepath.Join(dir, "z-copy.pub"), data, 0o644)

	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatalf("LoadKeyring() = %v", err)
	}
	if kr.Len() != 2 {
		t.Errorf("LoadKeyring().Len() = %d, want 2", kr.Len())
	}
	k, ok := kr.Lookup(a.ID)
	if !ok || k.Path != a.Public {
		t.Errorf("Lookup(%s) = %+v, %v, want the key from %s", a.ID, k, ok, a.Public)
	}
	keys := kr.Keys()
	if len(keys) != 2 || keys[0].ID != a.ID || keys[1].ID != b.ID {
		t.Errorf("Keys() = %v, want a then b", keys)
	}

	empty := t.TempDir()
	if kr, err := LoadKeyring(empty); err != nil || kr.Len() != 0 {
		t.Errorf("LoadKeyring(empty folder) = %v, %v, want an empty keyring", kr, err)
	}
	if _, err := LoadKeyring(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadKeyring(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestLoadKeyringRefuses(t *testing.T) {
	good := t.TempDir()
	kf, err := GenerateKey(good, "k", false)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(kf.Public)
	privPEM, _ := os.ReadFile(kf.Private)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})
	block, _ := pem.Decode(pubPEM)
	withHeaders := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: block.Bytes})
	badDER := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: block.Bytes[:len(block.Bytes)-1]})

	for _, tc := range []struct {
		name string
		data []byte // nil: make a folder named bad.pub
		msg  string
	}{
		{"empty file", []byte{}, "no PEM block"},
		{"garbage", []byte("ssh-ed25519 AAAAC3Nza... me@host"), "no PEM block"},
		{"private key", privPEM, "trusted keys folder takes public keys only"},
		{"ECDSA key", ecPEM, "want an ed25519 key"},
		{"data after PEM", append(append([]byte{}, pubPEM...), "extra"...), "data after its PEM block"},
		{"two keys", append(append([]byte{}, pubPEM...), pubPEM...), "data after its PEM block"},
		{"PEM headers", withHeaders, "headers"},
		{"truncated DER", badDER, "bad.pub"},
		{"huge file", make([]byte, keyFileMax+1), "too large"},
		{"folder", nil, "not a regular file"},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "fine.pub"), pubPEM, 0o644)
		path := filepath.Join(dir, "bad.pub")
		if tc.data == nil {
			os.Mkdir(path, 0o755)
		} else {
			os.WriteFile(path, tc.data, 0o644)
		}
		kr, err := LoadKeyring(dir)
		if kr != nil || !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: LoadKeyring() = %v, %v, want nil and ErrBadKeyFile naming %s and saying %q", tc.name, kr, err, path, tc.msg)
		}
	}
}

func TestLoadPrivateKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	kf, err := GenerateKey(dir, "k", false)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(kf.Public)
	for _, tc := range []struct {
		name string
		data string
		msg  string
	}{
		{"public key", string(pubPEM), `want "PRIVATE KEY"`},
		{"encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted keys are not supported"},
		{"openssh", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "OpenSSH keys are not supported"},
		{"bad DER", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "k2.key"},
	} {
		path := filepath.Join(dir, "k2.key")
		os.WriteFile(path, []byte(tc.data), 0o600)
		if _, err := LoadPrivateKey(path); !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: LoadPrivateKey() = %v, want ErrBadKeyFile saying %q", tc.name, err, tc.msg)
		}
	}
}

// TestOpenSSLKeys checks that keys made by openssl load, and that ours are
// what openssl expects, when openssl is installed.
func TestOpenSSLKeys(t *testing.T) {
	testenv.NeedTools(t, "openssl")
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "o.key"), filepath.Join(dir, "o.pub")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", priv).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	if out, err := exec.Command("openssl", "pkey", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	k, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatalf("LoadPrivateKey(openssl key) = %v", err)
	}
	p, err := LoadPublicKey(pub)
	if err != nil {
		t.Fatalf("LoadPublicKey(openssl key) = %v", err)
	}
	if !p.Equal(k.Public()) {
		t.Errorf("openssl's public key does not match its private key as loaded")
	}
	kf, err := GenerateKey(dir, "ours", false)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "pkey", "-in", kf.Private, "-noout").CombinedOutput(); err != nil {
		t.Errorf("openssl cannot read our private key: %v\n%s", err, out)
	}
}

// TestKeyDERMatchesX509: the fixed RFC 8410 encodings written and read
// here are what crypto/x509 writes and reads.
func TestKeyDERMatchesX509(t *testing.T) {
	for i := 0; i < 20; i++ {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		wantPub, _ := x509.MarshalPKIXPublicKey(pub)
		if got := append(bytes.Clone(spkiPrefix), pub...); !bytes.Equal(got, wantPub) {
			t.Fatalf("public key DER %x, crypto/x509 writes %x", got, wantPub)
		}
		wantPriv, _ := x509.MarshalPKCS8PrivateKey(priv)
		if got := append(bytes.Clone(pkcs8Prefix), priv.Seed()...); !bytes.Equal(got, wantPriv) {
			t.Fatalf("private key DER %x, crypto/x509 writes %x", got, wantPriv)
		}
		dir := t.TempDir()
		kf, err := GenerateKey(dir, "k", false)
		if err != nil {
			t.Fatal(err)
		}
		p, err := LoadPublicKey(kf.Public)
		if err != nil {
			t.Fatal(err)
		}
		s, err := LoadPrivateKey(kf.Private)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			path string
			want any
		}{{kf.Public, p}, {kf.Private, s}} {
			data, _ := os.ReadFile(f.path)
			block, _ := pem.Decode(data)
			var got any
			if block.Type == "PUBLIC KEY" {
				got, err = x509.ParsePKIXPublicKey(block.Bytes)
			} else {
				got, err = x509.ParsePKCS8PrivateKey(block.Bytes)
			}
			if err != nil {
				t.Fatalf("crypto/x509 cannot read %s: %v", f.path, err)
			}
			if !reflect.DeepEqual(got, f.want) {
				t.Errorf("%s: crypto/x509 reads %x, stent reads %x", f.path, got, f.want)
			}
		}
	}
}

// TestPKCS8Version1: private keys in RFC 5958's version 1, with the public
// key after the private key (and maybe attributes), as Bouncy Castle and
// RFC 8410's own example write them, load as crypto/x509 loads them; one
// whose public key is not the private key's is refused.
func TestPKCS8Version1(t *testing.T) {
	// RFC 8410, section 10.3.
	const rfc = "-----BEGIN PRIVATE KEY-----\n" +
		"MHICAQEwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n" +
		"oB8wHQYKKoZIhvcNAQkJFDEPDA1DdXJkbGUgQ2hhaXJzgSEAGb9ECWmEzf6FQbrB\n" +
		"Z9w7lshQhqowtrbLDFw4rXAxZuE=\n" +
		"-----END PRIVATE KEY-----\n"
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seq := func(parts ...[]byte) []byte {
		body := bytes.Join(parts, nil)
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	head := append([]byte{0x02, 0x01, 0x01}, pkcs8Middle...)
	head = append(head, priv.Seed()...)
	implicit := append([]byte{0x81, 0x21, 0x00}, pub...)
	explicit := append([]byte{0xa1, 0x23, 0x03, 0x21, 0x00}, pub...)
	attrs := []byte{0xa0, 0x02, 0x05, 0x00}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	wrongPub := append([]byte{0x81, 0x21, 0x00}, other...)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"RFC 8410 example", []byte(rfc), true},
		{"implicit public key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: seq(head, implicit)}), true},
		{"explicit public key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: seq(head, explicit)}), true},
		{"attributes and public key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: seq(head, attrs, implicit)}), true},
		{"version 1 without public key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: seq(head)}), true},
		{"another key's public key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: seq(head, wrongPub)}), false},
		{"trailing garbage", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: seq(head, implicit, []byte{0x05, 0x00})}), false},
	} {
		path := filepath.Join(dir, "k.key")
		if err := os.WriteFile(path, tc.pem, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := LoadPrivateKey(path)
		if !tc.ok {
			if !errors.Is(err, ErrBadKeyFile) {
				t.Errorf("%s: LoadPrivateKey() = %v, want ErrBadKeyFile", tc.name, err)
			}
			continue
		}
		block, _ := pem.Decode(tc.pem)
		want, xerr := x509.ParsePKCS8PrivateKey(block.Bytes)
		if xerr != nil {
			t.Fatalf("%s: crypto/x509 refuses it too: %v", tc.name, xerr)
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: LoadPrivateKey() = %x, %v; crypto/x509 reads %x", tc.name, got, err, want)
		}
	}
}

// FuzzPKCS8Seed: what pkcs8Seed accepts, crypto/x509 reads as the same
// ed25519 key.
func FuzzPKCS8Seed(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	v0, _ := x509.MarshalPKCS8PrivateKey(priv)
	f.Add(v0)
	v1 := append([]byte{0x02, 0x01, 0x01}, pkcs8Middle...)
	v1 = append(append(v1, priv.Seed()...), append([]byte{0x81, 0x21, 0x00}, priv.Public().(ed25519.PublicKey)...)...)
	f.Add(append([]byte{0x30, byte(len(v1))}, v1...))
	f.Fuzz(func(t *testing.T, der []byte) {
		seed, ok := pkcs8Seed(der)
		if !ok {
			return
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("pkcs8Seed(%x) accepts, crypto/x509 says %v", der, err)
		}
		if got := ed25519.NewKeyFromSeed(seed); !reflect.DeepEqual(k, got) {
			t.Fatalf("pkcs8Seed(%x) = %x, crypto/x509 reads %x", der, got, k)
		}
	})
}
