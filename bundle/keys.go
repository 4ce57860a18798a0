package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/internal/charclass"
	"github.com/stent-dev/stent/internal/fsutil"
)

// ErrBadKeyFile: a key file is not a PEM ed25519 key of the expected kind.
var ErrBadKeyFile = errors.New("bad key file")

const (
	keyFileMax = 64 << 10 // a PEM ed25519 key is about 120 bytes

	// PublicKeySuffix ends public key files; the trusted keys folder holds
	// one *.pub file per key.
	PublicKeySuffix = ".pub"
	// PrivateKeySuffix ends private key files written by GenerateKey.
	PrivateKeySuffix = ".key"
)

// KeyID names a public key: the first 8 bytes of the sha256 of its raw 32
// bytes, printed as 16 lowercase hex digits.
type KeyID [8]byte

// KeyIDOf returns the id of pub.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	var id KeyID
	copy(id[:], sum[:])
	return id
}

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText prints the id as 16 hex digits, in JSON too.
func (id KeyID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads 16 hex digits.
func (id *KeyID) UnmarshalText(b []byte) error {
	p, err := ParseKeyID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseKeyID reads a key id written as 16 hex digits.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("key id %q: want 16 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// Key is a trusted public key.
type Key struct {
	ID     KeyID
	Public ed25519.PublicKey
	Path   string // the .pub file it came from; empty for keys given in code
}

// Source names where the key came from, for messages.
func (k Key) Source() string {
	if k.Path == "" {
		return "key given in code"
	}
	return k.Path
}

// Keyring is a set of trusted public keys, looked up by id.
type Keyring struct {
	Dir  string // the folder the keys were loaded from, for messages
	keys map[KeyID]Key
}

// NewKeyring returns a keyring holding pubs.
func NewKeyring(pubs ...ed25519.PublicKey) *Keyring {
	kr := &Keyring{keys: make(map[KeyID]Key)}
	for _, p := range pubs {
		id := KeyIDOf(p)
		kr.keys[id] = Key{ID: id, Public: bytes.Clone(p)}
	}
	return kr
}

// Lookup returns the key with id.
func (kr *Keyring) Lookup(id KeyID) (Key, bool) {
	if kr == nil {
		return Key{}, false
	}
	k, ok := kr.keys[id]
	return k, ok
}

// Len returns the number of keys.
func (kr *Keyring) Len() int {
	if kr == nil {
		return 0
	}
	return len(kr.keys)
}

// Keys returns the keys ordered by file path, then id.
func (kr *Keyring) Keys() []Key {
	out := make([]Key, 0, kr.Len())
	if kr != nil {
		for _, k := range kr.keys {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0
	})
	return out
}

func (kr *Keyring) where() string {
	if kr.Dir == "" {
		return ""
	}
	return " in " + kr.Dir
}

// LoadKeyring loads every *.pub file in dir (files whose names start with a
// dot are skipped). Any malformed file fails the whole load, with an error
// naming each bad file: a keyring is either what the folder says or nothing.
// An empty folder gives an empty keyring, which verifies nothing.
//
// The folder, every folder above it and every key file must be owned by
// root or the running user and writable by nobody else (as sshd's
// StrictModes): otherwise LoadKeyring fails with ErrUnsafeKeyPath naming
// the file, its mode or owner and what to do.
func LoadKeyring(dir string) (*Keyring, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read trusted keys folder: %w", err)
	}
	if err := checkTrustedPath(dir); err != nil {
		return nil, fmt.Errorf("trusted keys folder %s: %w", dir, err)
	}
	kr := &Keyring{Dir: dir, keys: make(map[KeyID]Key)}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, PublicKeySuffix) || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if err := checkTrustedPath(path); err != nil {
			errs = append(errs, fmt.Errorf("trusted key %s: %w", path, err))
			continue
		}
		pub, err := LoadPublicKey(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		id := KeyIDOf(pub)
		if prev, ok := kr.keys[id]; ok {
			if !prev.Public.Equal(pub) {
				errs = append(errs, fmt.Errorf("%w: %s and %s hold different keys with the same id %s", ErrBadKeyFile, prev.Path, path, id))
			}
			continue // the same key in two files is harmless
		}
		kr.keys[id] = Key{ID: id, Public: pub, Path: path}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return kr, nil
}

// readKeyFile reads a small key file, refusing anything but a regular file
// of at most keyFileMax bytes.
func readKeyFile(path string) ([]byte, error) {
	data, err := fsutil.ReadFileMax(path, keyFileMax)
	if errors.Is(err, fsutil.ErrNotRegular) || errors.Is(err, fsutil.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %v", ErrBadKeyFile, err)
	}
	return data, err
}

// The DER encodings of ed25519 keys are fixed (RFC 8410): a constant
// prefix naming the algorithm (OID 1.3.101.112), then the 32 key bytes.
// They are built and matched here rather than with crypto/x509, which would
// link every other algorithm into the host binary and cost each stent
// command its start-up; keys_test.go checks them against crypto/x509.
var (
	// SubjectPublicKeyInfo { AlgorithmIdentifier { id-Ed25519 }, BIT STRING (32 bytes) }
	spkiPrefix = []byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}
	// OneAsymmetricKey v1 { version 0, AlgorithmIdentifier { id-Ed25519 }, OCTET STRING { OCTET STRING (32-byte seed) } }
	pkcs8Prefix = []byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}
	// AlgorithmIdentifier { id-Ed25519 }, then the private key's OCTET STRING { OCTET STRING (32 bytes) }
	pkcs8Middle = []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}
)

// pkcs8Seed returns the 32-byte seed of an ed25519 PKCS #8 private key:
// version 0 (RFC 5208), what openssl genpkey and stent write, or version 1
// (RFC 5958 OneAsymmetricKey), which adds the public key ([1]) and maybe
// attributes ([0]) after the private key, as Bouncy Castle writes. A
// public key there must be the seed's.
func pkcs8Seed(der []byte) ([]byte, bool) {
	if seed, ok := bytes.CutPrefix(der, pkcs8Prefix); ok {
		return seed, len(seed) == ed25519.SeedSize
	}
	body, rest, ok := derElement(der, 0x30)
	if !ok || len(rest) != 0 {
		return nil, false
	}
	body, ok = bytes.CutPrefix(body, []byte{0x02, 0x01, 0x01}) // version 1
	if !ok {
		return nil, false
	}
	body, ok = bytes.CutPrefix(body, pkcs8Middle)
	if !ok || len(body) < ed25519.SeedSize {
		return nil, false
	}
	seed, body := body[:ed25519.SeedSize], body[ed25519.SeedSize:]
	if _, next, ok := derElement(body, 0xa0); ok { // attributes [0], not used
		body = next
	}
	if len(body) == 0 {
		return seed, true
	}
	// publicKey [1] BIT STRING, implicit (RFC 5958) or explicit (Bouncy Castle).
	pub, next, ok := derElement(body, 0x81)
	if !ok {
		var inner []byte
		if inner, next, ok = derElement(body, 0xa1); ok {
			var after []byte
			pub, after, ok = derElement(inner, 0x03)
			ok = ok && len(after) == 0
		}
	}
	if !ok || len(next) != 0 {
		return nil, false
	}
	want := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if !bytes.Equal(pub, append([]byte{0}, want...)) {
		return nil, false
	}
	return seed, true
}

// derElement splits off the DER element of the given tag at the start of
// b: its contents and what follows it.
func derElement(b []byte, tag byte) (contents, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, hdr := int(b[1]), 2
	switch {
	case n < 0x80:
	case n == 0x81 && len(b) >= 3 && b[2] >= 0x80:
		n, hdr = int(b[2]), 3
	case n == 0x82 && len(b) >= 4 && b[2] != 0:
		n, hdr = int(b[2])<<8|int(b[3]), 4
	default:
		return nil, nil, false
	}
	if len(b)-hdr < n {
		return nil, nil, false
	}
	return b[hdr : hdr+n], b[hdr+n:], true
}

// decodePEM returns the single PEM block in data, which must be of type
// want, with nothing but white space around it.
func decodePEM(path string, data []byte, want string) (*pem.Block, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: %s has no PEM block; want a %q PEM file", ErrBadKeyFile, path, want)
	}
	if block.Type != want {
		hint := ""
		switch block.Type {
		case "ENCRYPTED PRIVATE KEY":
			hint = "; encrypted keys are not supported"
		case "OPENSSH PRIVATE KEY":
			hint = "; OpenSSH keys are not supported, make one with stent key generate"
		case "PRIVATE KEY":
			hint = "; this is a private key, the trusted keys folder takes public keys only"
		}
		return nil, fmt.Errorf("%w: %s holds a %q PEM block, want %q%s", ErrBadKeyFile, path, block.Type, want, hint)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: %s: PEM headers are not supported", ErrBadKeyFile, path)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %s has data after its PEM block", ErrBadKeyFile, path)
	}
	return block, nil
}

// LoadPublicKey reads an ed25519 public key from a PKIX PEM file
// ("-----BEGIN PUBLIC KEY-----").
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	return parsePublicKey(path, data)
}

// parsePublicKey reads the PEM bytes of the public key file path.
func parsePublicKey(path string, data []byte) (ed25519.PublicKey, error) {
	block, err := decodePEM(path, data, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	key, ok := bytes.CutPrefix(block.Bytes, spkiPrefix)
	if !ok || len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %s: not an ed25519 public key (RFC 8410 SubjectPublicKeyInfo), want an ed25519 key", ErrBadKeyFile, path)
	}
	return ed25519.PublicKey(key), nil
}

// LoadPrivateKey reads an ed25519 private key from a PKCS#8 PEM file
// ("-----BEGIN PRIVATE KEY-----").
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	block, err := decodePEM(path, data, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	seed, ok := pkcs8Seed(block.Bytes)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not an ed25519 private key (RFC 8410 PKCS #8), want an ed25519 key", ErrBadKeyFile, path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// KeyFiles says where GenerateKey put a new key pair.
type KeyFiles struct {
	Private string // DIR/NAME.key, PKCS#8 PEM, mode 0600
	Public  string // DIR/NAME.pub, PKIX PEM, mode 0644
	ID      KeyID
}

var keyNameRest = charclass.New("A-Za-z0-9._-")

// validKeyName: 1 to 64 letters, digits, '.', '_' or '-', starting with a
// letter or digit.
func validKeyName(name string) bool { return charclass.Word(name, alnum, keyNameRest, 64) }

// EncodePublicKey returns pub as the PKIX PEM of a .pub file, the form a
// host's trusted keys folder holds.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("ed25519 public key of %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der := append(bytes.Clone(spkiPrefix), pub...)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// GenerateKey makes a new ed25519 key pair and writes it to dir (created
// 0700 if missing) as NAME.key and NAME.pub. Unless overwrite is set it
// refuses, with an error wrapping fs.ErrExist, when either file exists.
// An existing dir that others than root and the running user could write
// is refused with ErrUnsafeKeyPath. Files are written atomically.
func GenerateKey(dir, name string, overwrite bool) (*KeyFiles, error) {
	if !validKeyName(name) {
		return nil, fmt.Errorf("key name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	kf := &KeyFiles{
		Private: filepath.Join(dir, name+PrivateKeySuffix),
		Public:  filepath.Join(dir, name+PublicKeySuffix),
	}
	// Others who may write the folder could swap the public key that gets
	// copied to hosts, or the private one: refuse it, as LoadKeyring
	// refuses such a keys folder.
	if _, err := os.Stat(dir); err == nil {
		if err := checkTrustedPath(dir); err != nil {
			return nil, fmt.Errorf("generate key in %s: %w; write the key pair to a folder only you can write (mkdir -m 700)", dir, err)
		}
	}
	if !overwrite {
		for _, p := range []string{kf.Private, kf.Public} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("generate key: %s: %w", p, fs.ErrExist)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	privDER := append(bytes.Clone(pkcs8Prefix), priv.Seed()...)
	pubPEM, err := EncodePublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	if err := writeKeyFile(kf.Private, privPEM, 0o600, overwrite); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	if err := writeKeyFile(kf.Public, pubPEM, 0o644, overwrite); err != nil {
		if !overwrite {
			os.Remove(kf.Private) // we made it a moment ago; leave no half pair
		}
		return nil, fmt.Errorf("generate key: %w", err)
	}
	kf.ID = KeyIDOf(pub)
	return kf, nil
}

func writeKeyFile(path string, data []byte, perm os.FileMode, overwrite bool) error {
	if overwrite {
		return atomicfile.Write(path, data, perm)
	}
	return atomicfile.WriteNew(path, data, perm)
}
