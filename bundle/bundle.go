// Package bundle reads and writes Stent's signed patch bundles: a livepatch
// kernel module and its JSON manifest, signed together with ed25519. It also
// generates and loads the signing keys and the keyring of trusted public keys.
//
// Parsing (Parse, Read) checks structure only and never panics on any input;
// Verify checks the signature against a Keyring; Open does both for a file.
// The byte layout is described in docs/bundle-format.md.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/stent-dev/stent/internal/fsutil"
)

// Layout of a bundle (all integers big-endian):
//
//	off  size  field
//	0    8     Magic
//	8    4     container version (1)
//	12   4     manifest length M, 1..MaxManifestSize
//	16   8     module length K, 1..MaxModuleSize
//	24   8     signing key id
//	32   64    ed25519 signature
//	96   M     manifest JSON
//	96+M K     module (.ko) bytes, then end of file
const (
	// Magic starts every bundle. Like PNG's it holds a high-bit byte, CR LF,
	// ^Z and LF, so text-mode transfers and 7-bit channels visibly break it.
	Magic = "\x89STB\r\n\x1a\n"
	// ContainerVersion is the only container layout this package reads.
	ContainerVersion = 1
	// HeaderSize is the size of the fixed header before the manifest.
	HeaderSize = 96
	// MaxManifestSize bounds the manifest JSON.
	MaxManifestSize = 1 << 20
	// MaxModuleSize bounds the module; livepatch modules are well under 10 MiB.
	MaxModuleSize = 64 << 20
	// MaxSize bounds a whole bundle file.
	MaxSize = HeaderSize + MaxManifestSize + MaxModuleSize

	offVersion   = 8
	offManLen    = 12
	offModLen    = 16
	offKeyID     = 24
	offSignature = 32

	// signingContext separates bundle signatures from any other use of the
	// same key. It ends in NUL so no context can be a prefix of another.
	signingContext = "stent-bundle-v1\x00"
)

// Bundle is a parsed bundle. It is immutable: accessors return the parsed
// data, and byte slices must not be modified.
type Bundle struct {
	manifest      *Manifest
	manifestBytes []byte
	module        []byte
	keyID         KeyID
	sig           []byte
	// Digests computed once by Parse; the bytes are immutable, so Verify
	// and callers reuse them instead of hashing the module again.
	manifestSum, moduleSum [sha256.Size]byte
}

// ModuleSHA256 returns the sha256 of the module bytes, lowercase hex.
func (b *Bundle) ModuleSHA256() string { return hex.EncodeToString(b.moduleSum[:]) }

// SHA256 identifies the bundle's signed content: the sha256 of the signed
// message (context, manifest digest, module digest), lowercase hex.
func (b *Bundle) SHA256() string {
	sum := sha256.Sum256(signedMessageOf(b.manifestSum, b.moduleSum))
	return hex.EncodeToString(sum[:])
}

// Manifest returns a copy of the decoded, validated manifest.
func (b *Bundle) Manifest() *Manifest { return b.manifest.clone() }

// ManifestBytes returns the manifest exactly as signed.
func (b *Bundle) ManifestBytes() []byte { return b.manifestBytes }

// Module returns the livepatch module (.ko) bytes.
func (b *Bundle) Module() []byte { return b.module }

// KeyID returns the id of the key the bundle says signed it.
func (b *Bundle) KeyID() KeyID { return b.keyID }

// header is the decoded fixed header.
type header struct {
	manLen, modLen int64
	keyID          KeyID
	sig            []byte
}

func (h header) total() int64 { return HeaderSize + h.manLen + h.modLen }

// parseHeader checks the fixed header. Every length is checked against its
// limit here, before anything is allocated for it. data may be shorter
// than a header.
func parseHeader(data []byte) (header, error) {
	if len(data) < len(Magic) {
		if bytes.HasPrefix([]byte(Magic), data) {
			return header{}, formatErr(ErrMalformed, int64(len(data)), "truncated in the magic: %d bytes, a header is %d", len(data), HeaderSize)
		}
		return header{}, formatErr(ErrMalformed, 0, "not a stent bundle (bad magic)")
	}
	if string(data[:len(Magic)]) != Magic {
		return header{}, formatErr(ErrMalformed, 0, "not a stent bundle (bad magic %q)", data[:len(Magic)])
	}
	if len(data) < HeaderSize {
		return header{}, formatErr(ErrMalformed, int64(len(data)), "truncated header: %d bytes, a header is %d", len(data), HeaderSize)
	}
	if v := binary.BigEndian.Uint32(data[offVersion:]); v != ContainerVersion {
		return header{}, formatErr(ErrUnknownVersion, offVersion, "container version %d is not supported (this stent reads version %d)", v, ContainerVersion)
	}
	var h header
	manLen := binary.BigEndian.Uint32(data[offManLen:])
	switch {
	case manLen == 0:
		return header{}, formatErr(ErrMalformed, offManLen, "manifest length is 0")
	case manLen > MaxManifestSize:
		return header{}, formatErr(ErrTooLarge, offManLen, "manifest length %d is over the limit of %d", manLen, MaxManifestSize)
	}
	modLen := binary.BigEndian.Uint64(data[offModLen:])
	switch {
	case modLen == 0:
		return header{}, formatErr(ErrMalformed, offModLen, "module length is 0")
	case modLen > MaxModuleSize:
		return header{}, formatErr(ErrTooLarge, offModLen, "module length %d is over the limit of %d", modLen, MaxModuleSize)
	}
	h.manLen, h.modLen = int64(manLen), int64(modLen)
	copy(h.keyID[:], data[offKeyID:offSignature])
	h.sig = bytes.Clone(data[offSignature:HeaderSize])
	return h, nil
}

// Parse parses a bundle held in memory. It checks the structure strictly:
// the magic, the version, lengths within limits, nothing missing and nothing
// after the module, a manifest that decodes strictly and validates, and
// module bytes matching the manifest's module_sha256 and module_size. It does
// not check the signature: call Verify. The Bundle shares memory with data.
// Parse never panics.
func Parse(data []byte) (*Bundle, error) {
	h, err := parseHeader(data)
	if err != nil {
		return nil, err
	}
	switch n := int64(len(data)); {
	case n < h.total():
		return nil, formatErr(ErrMalformed, n, "truncated: %d bytes, the header says %d (manifest %d, module %d)", n, h.total(), h.manLen, h.modLen)
	case n > h.total():
		return nil, formatErr(ErrMalformed, h.total(), "unexpected bytes after the module")
	}
	return parseBody(h, data[HeaderSize:HeaderSize+h.manLen], data[HeaderSize+h.manLen:])
}

// Read reads a bundle from r to its end, refusing lengths over the limits
// before allocating for them, and then parses it as Parse does.
func Read(r io.Reader) (*Bundle, error) {
	hb := make([]byte, HeaderSize)
	n, err := io.ReadFull(r, hb)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("read header: %w", err)
	}
	h, err := parseHeader(hb[:n])
	if err != nil {
		return nil, err
	}
	// Grow with what actually arrives, so a short stream claiming a large
	// module costs only what it sends.
	need := h.manLen + h.modLen
	var buf bytes.Buffer
	buf.Grow(int(min(need, 1<<20)))
	got, err := buf.ReadFrom(io.LimitReader(r, need))
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if got < need {
		n := HeaderSize + got
		return nil, formatErr(ErrMalformed, n, "truncated: %d bytes, the header says %d (manifest %d, module %d)", n, h.total(), h.manLen, h.modLen)
	}
	body := buf.Bytes()
	var extra [1]byte
	if n, err := io.ReadFull(r, extra[:]); n > 0 {
		return nil, formatErr(ErrMalformed, h.total(), "unexpected bytes after the module")
	} else if err != io.EOF {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	return parseBody(h, body[:h.manLen], body[h.manLen:])
}

func parseBody(h header, manifest, module []byte) (*Bundle, error) {
	m, err := DecodeManifest(manifest)
	if err == nil {
		err = m.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("manifest (bytes %d..%d): %w", HeaderSize, HeaderSize+h.manLen, err)
	}
	b := &Bundle{manifest: m, manifestBytes: manifest, module: module, keyID: h.keyID, sig: h.sig,
		manifestSum: sha256.Sum256(manifest), moduleSum: sha256.Sum256(module)}
	if err := checkModule(m, module, b.moduleSum); err != nil {
		return nil, err
	}
	return b, nil
}

// checkModule compares module with the manifest's size and digest.
func checkModule(m *Manifest, module []byte, sum [sha256.Size]byte) error {
	if int64(len(module)) != m.ModuleSize {
		return fmt.Errorf("%w: module is %d bytes, manifest module_size says %d", ErrDigestMismatch, len(module), m.ModuleSize)
	}
	if got := hex.EncodeToString(sum[:]); got != m.ModuleSHA256 {
		return fmt.Errorf("%w: module sha256 is %s, manifest module_sha256 says %s", ErrDigestMismatch, got, m.ModuleSHA256)
	}
	return nil
}

// signedMessage is what the ed25519 signature covers: the context string,
// then the sha256 of the manifest bytes, then the sha256 of the module bytes.
func signedMessage(manifest, module []byte) []byte {
	return signedMessageOf(sha256.Sum256(manifest), sha256.Sum256(module))
}

func signedMessageOf(mh, kh [sha256.Size]byte) []byte {
	msg := make([]byte, 0, len(signingContext)+2*sha256.Size)
	msg = append(msg, signingContext...)
	msg = append(msg, mh[:]...)
	return append(msg, kh[:]...)
}

// Verify checks that the bundle was signed by a key in kr and that the
// module matches the manifest. It returns an error wrapping ErrUnknownKey,
// ErrBadSignature or ErrDigestMismatch, naming the key and what differed.
func (b *Bundle) Verify(kr *Keyring) error {
	if kr == nil || kr.Len() == 0 {
		where := ""
		if kr != nil && kr.Dir != "" {
			where = " in " + kr.Dir
		}
		return fmt.Errorf("%w: bundle is signed by key %s and there are no trusted keys%s", ErrUnknownKey, b.keyID, where)
	}
	key, ok := kr.Lookup(b.keyID)
	if !ok {
		return fmt.Errorf("%w: bundle is signed by key %s, which is not among the %d trusted keys%s; install its .pub file to trust it", ErrUnknownKey, b.keyID, kr.Len(), kr.where())
	}
	if !ed25519.Verify(key.Public, signedMessageOf(b.manifestSum, b.moduleSum), b.sig) {
		return fmt.Errorf("%w: signature does not verify under key %s (%s) for manifest sha256 %x and module sha256 %x", ErrBadSignature, key.ID, key.Source(), b.manifestSum, b.moduleSum)
	}
	return checkModule(b.manifest, b.module, b.moduleSum)
}

// Create writes a signed bundle of m and module to w. module_sha256 and
// module_size are filled from module when empty and must match it when set;
// every other field must already be valid. m itself is not modified.
func Create(w io.Writer, m *Manifest, module []byte, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("create bundle: signing key is %d bytes, want an ed25519 private key of %d", len(key), ed25519.PrivateKeySize)
	}
	if len(module) == 0 || len(module) > MaxModuleSize {
		return fmt.Errorf("create bundle: %w: module is %d bytes, want 1..%d", ErrTooLarge, len(module), MaxModuleSize)
	}
	c := m.clone()
	sum := sha256.Sum256(module)
	if c.ModuleSHA256 == "" {
		c.ModuleSHA256 = hex.EncodeToString(sum[:])
	}
	if c.ModuleSize == 0 {
		c.ModuleSize = int64(len(module))
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	if err := checkModule(c, module, sha256.Sum256(module)); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	manifest, err := encodeManifest(c)
	if err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	// What is signed must read back as it was meant.
	if back, err := DecodeManifest(manifest); err != nil {
		return fmt.Errorf("create bundle: manifest does not read back: %w", err)
	} else if err := back.Validate(); err != nil {
		return fmt.Errorf("create bundle: manifest does not read back: %w", err)
	}
	if len(manifest) > MaxManifestSize {
		return fmt.Errorf("create bundle: %w: manifest is %d bytes, over the limit of %d", ErrTooLarge, len(manifest), MaxManifestSize)
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	hdr := make([]byte, HeaderSize, HeaderSize+len(manifest))
	copy(hdr, Magic)
	binary.BigEndian.PutUint32(hdr[offVersion:], ContainerVersion)
	binary.BigEndian.PutUint32(hdr[offManLen:], uint32(len(manifest)))
	binary.BigEndian.PutUint64(hdr[offModLen:], uint64(len(module)))
	id := KeyIDOf(pub)
	copy(hdr[offKeyID:], id[:])
	copy(hdr[offSignature:], ed25519.Sign(key, signedMessage(manifest, module)))
	if _, err := w.Write(append(hdr, manifest...)); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	if _, err := w.Write(module); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

// encodeManifest renders m as indented JSON ending in a newline, so the
// manifest reads well straight out of the bundle file.
func encodeManifest(m *Manifest) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadFile reads and parses the bundle file at path, refusing files over
// MaxSize before reading them. It does not verify the signature; Open does.
func ReadFile(path string) (*Bundle, error) {
	data, err := fsutil.ReadFileMax(path, MaxSize)
	if errors.Is(err, fsutil.ErrTooLarge) {
		return nil, fmt.Errorf("read bundle: %w: %v", ErrTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", path, err)
	}
	return b, nil
}

// Open reads the bundle file at path as ReadFile does and verifies it
// against kr.
func Open(path string, kr *Keyring) (*Bundle, error) {
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := b.Verify(kr); err != nil {
		return nil, fmt.Errorf("verify bundle %s: %w", path, err)
	}
	return b, nil
}
