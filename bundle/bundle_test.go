package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// testKey returns a fixed key, so bundles in tests are reproducible.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func testPub(seed byte) ed25519.PublicKey { return testKey(seed).Public().(ed25519.PublicKey) }

// testModule is stand-in module bytes; the bundle does not look inside.
var testModule = append([]byte("\x7fELF"), bytes.Repeat([]byte("module"), 40)...)

// makeBundle returns a valid bundle of validManifest and testModule signed
// by testKey(1).
func makeBundle(t testing.TB) []byte {
	t.Helper()
	m := validManifest()
	m.ModuleSHA256, m.ModuleSize = "", 0
	var buf bytes.Buffer
	if err := Create(&buf, m, testModule, testKey(1)); err != nil {
		t.Fatalf("Create() = %v", err)
	}
	return buf.Bytes()
}

// assemble builds a bundle from parts, signing with key, without any of
// Create's checks: for bundles Create refuses to make.
func assemble(manifest, module []byte, key ed25519.PrivateKey) []byte {
	hdr := make([]byte, HeaderSize)
	copy(hdr, Magic)
	binary.BigEndian.PutUint32(hdr[offVersion:], ContainerVersion)
	binary.BigEndian.PutUint32(hdr[offManLen:], uint32(len(manifest)))
	binary.BigEndian.PutUint64(hdr[offModLen:], uint64(len(module)))
	id := KeyIDOf(key.Public().(ed25519.PublicKey))
	copy(hdr[offKeyID:], id[:])
	copy(hdr[offSignature:], ed25519.Sign(key, signedMessage(manifest, module)))
	return append(append(hdr, manifest...), module...)
}

// parseBoth parses data with Parse and with Read and checks they agree.
func parseBoth(t *testing.T, data []byte) (*Bundle, error) {
	t.Helper()
	b1, err1 := Parse(data)
	b2, err2 := Read(bytes.NewReader(data))
	if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
		t.Errorf("Parse() = %v but Read() = %v", err1, err2)
	}
	if b1 != nil && b2 != nil && !bytes.Equal(b1.ManifestBytes(), b2.ManifestBytes()) {
		t.Errorf("Parse and Read disagree on the manifest")
	}
	return b1, err1
}

func TestRoundTrip(t *testing.T) {
	data := makeBundle(t)
	b, err := parseBoth(t, data)
	if err != nil {
		t.Fatalf("Parse() = %v", err)
	}
	kr := NewKeyring(testPub(2), testPub(1))
	if err := b.Verify(kr); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	want := validManifest()
	sum := sha256.Sum256(testModule)
	want.ModuleSHA256, want.ModuleSize = hex.EncodeToString(sum[:]), int64(len(testModule))
	if diff := cmp.Diff(want, b.Manifest()); diff != "" {
		t.Errorf("Manifest() mismatch (-want +got):\n%s", diff)
	}
	if !bytes.Equal(b.Module(), testModule) {
		t.Errorf("Module() differs from the module bundled")
	}
	if got, want := b.KeyID(), KeyIDOf(testPub(1)); got != want {
		t.Errorf("KeyID() = %s, want %s", got, want)
	}
	// The manifest sits at a fixed offset as readable JSON.
	if !bytes.HasPrefix(data[HeaderSize:], []byte("{\n  \"format_version\": 1,")) {
		t.Errorf("manifest at byte %d = %.40q, want indented JSON", HeaderSize, data[HeaderSize:])
	}
	// Manifest returns a copy: changing it changes nothing in the bundle.
	b.Manifest().Functions[0].Name = "changed"
	if b.Manifest().Functions[0].Name == "changed" {
		t.Errorf("Manifest() returned shared state")
	}
	// Bundles are deterministic: same inputs, same bytes.
	if again := makeBundle(t); !bytes.Equal(again, data) {
		t.Errorf("Create is not deterministic")
	}
}

func TestCreateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Manifest)
		module []byte
		key    ed25519.PrivateKey
		is     error
	}{
		{"wrong module sha", func(m *Manifest) { m.ModuleSize = 0 }, testModule, testKey(1), ErrDigestMismatch},
		{"wrong module size", func(m *Manifest) { m.ModuleSHA256, m.ModuleSize = "", 5 }, testModule, testKey(1), ErrDigestMismatch},
		{"invalid manifest", func(m *Manifest) { m.ModuleSHA256, m.ModuleSize, m.Name = "", 0, "" }, testModule, testKey(1), ErrInvalidManifest},
		{"empty module", func(m *Manifest) {}, nil, testKey(1), ErrTooLarge},
		{"short key", func(m *Manifest) { m.ModuleSHA256, m.ModuleSize = "", 0 }, testModule, testKey(1)[:32], nil},
	} {
		m := validManifest()
		tc.edit(m)
		before := m.clone()
		err := Create(io.Discard, m, tc.module, tc.key)
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: Create() = %v, want %v", tc.name, err, tc.is)
		}
		if diff := cmp.Diff(before, m); diff != "" {
			t.Errorf("%s: Create changed its manifest argument:\n%s", tc.name, diff)
		}
	}
	if err := Create(iotest.TruncateWriter(errWriter{}, 0), validManifest(), testModule, testKey(1)); err == nil {
		t.Errorf("Create(failing writer) = nil, want an error")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestRefusals covers every way a bundle is refused, by Parse or by Verify.
func TestRefusals(t *testing.T) {
	good := makeBundle(t)
	manEnd := HeaderSize + int(binary.BigEndian.Uint32(good[offManLen:]))
	manifest := good[HeaderSize:manEnd]
	trusted := NewKeyring(testPub(1))

	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	replaceInManifest := func(old, new string) []byte {
		return edit(func(b []byte) []byte {
			i := bytes.Index(b[HeaderSize:manEnd], []byte(old))
			if i < 0 || len(old) != len(new) {
				t.Fatalf("cannot replace %q in the manifest", old)
			}
			copy(b[HeaderSize+i:], new)
			return b
		})
	}
	otherModule := bytes.Clone(testModule)
	otherModule[10] ^= 1
	sum := sha256.Sum256(otherModule)
	reManifested := bytes.Replace(manifest, []byte(hexSum(testModule)), []byte(hex.EncodeToString(sum[:])), 1)

	v2 := validManifest()
	v2.FormatVersion = 2
	v2Bytes, _ := encodeManifest(v2)

	for _, tc := range []struct {
		name     string
		data     []byte
		kr       *Keyring
		parseErr error // nil: Parse must succeed and Verify fail with verifyErr
		verifErr error
		msg      string
	}{
		{"tampered manifest byte", replaceInManifest("Fix nf_tables", "Fix nf_tablez"), trusted, nil, ErrBadSignature, "does not verify"},
		{"tampered level", replaceInManifest(`"level": 3`, `"level": 9`), trusted, nil, ErrBadSignature, ""},
		{"tampered manifest byte breaking JSON", edit(func(b []byte) []byte { b[HeaderSize] = '['; return b }), trusted, ErrMalformed, nil, "not a JSON object"},
		{"tampered module byte", edit(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), trusted, ErrDigestMismatch, nil, "module sha256 is"},
		{"module swapped with manifest hash updated", assembleWithSig(reManifested, otherModule, good), trusted, nil, ErrBadSignature, ""},
		{"module size mismatch", assemble(bytes.Replace(manifest, []byte(`"module_size": 244`), []byte(`"module_size": 245`), 1), testModule, testKey(1)), trusted, ErrDigestMismatch, nil, "module_size says 245"},
		{"tampered signature", edit(func(b []byte) []byte { b[offSignature+5] ^= 1; return b }), trusted, nil, ErrBadSignature, ""},
		{"tampered key id", edit(func(b []byte) []byte { b[offKeyID] ^= 1; return b }), trusted, nil, ErrUnknownKey, "not among the 1 trusted keys"},
		{"signed by an untrusted key", assemble(manifest, testModule, testKey(3)), trusted, nil, ErrUnknownKey, KeyIDOf(testPub(3)).String()},
		{"wrong key under a trusted id", edit(func(b []byte) []byte {
			copy(b[offSignature:HeaderSize], ed25519.Sign(testKey(3), signedMessage(manifest, testModule)))
			return b
		}), trusted, nil, ErrBadSignature, KeyIDOf(testPub(1)).String()},
		{"no trusted keys", good, NewKeyring(), nil, ErrUnknownKey, "no trusted keys"},
		{"nil keyring", good, nil, nil, ErrUnknownKey, "no trusted keys"},
		{"only other keys trusted", good, NewKeyring(testPub(2), testPub(3)), nil, ErrUnknownKey, "2 trusted keys"},
		{"trailing byte", append(bytes.Clone(good), 0), trusted, ErrMalformed, nil, "unexpected bytes after the module"},
		{"two bundles", append(bytes.Clone(good), good...), trusted, ErrMalformed, nil, "after the module"},
		{"empty", nil, trusted, ErrMalformed, nil, "truncated"},
		{"text", []byte("hello, this is not a bundle at all, not one bit of it, no"), trusted, ErrMalformed, nil, "bad magic"},
		{"ELF", append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 200)...), trusted, ErrMalformed, nil, "bad magic"},
		{"gzip", []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00"), trusted, ErrMalformed, nil, "bad magic"},
		{"CRLF-mangled magic", append([]byte("\x89STB\n\x1a\n"), good[8:]...), trusted, ErrMalformed, nil, "bad magic"},
		{"container version 2", edit(func(b []byte) []byte { b[offVersion+3] = 2; return b }), trusted, ErrUnknownVersion, nil, "container version 2"},
		{"container version 0", edit(func(b []byte) []byte { b[offVersion+3] = 0; return b }), trusted, ErrUnknownVersion, nil, ""},
		{"manifest format_version 2", assemble(v2Bytes, testModule, testKey(1)), trusted, ErrUnknownVersion, nil, "format_version"},
		{"manifest length over limit", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offManLen:], MaxManifestSize+1); return b }), trusted, ErrTooLarge, nil, "manifest length 1048577"},
		{"manifest length max uint32", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offManLen:], 1<<32-1); return b }), trusted, ErrTooLarge, nil, ""},
		{"module length over limit", edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offModLen:], MaxModuleSize+1); return b }), trusted, ErrTooLarge, nil, "module length"},
		{"module length 2^63", edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offModLen:], 1<<63); return b }), trusted, ErrTooLarge, nil, ""},
		{"module length max uint64", edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offModLen:], 1<<64-1); return b }), trusted, ErrTooLarge, nil, ""},
		{"manifest length 0", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offManLen:], 0); return b }), trusted, ErrMalformed, nil, "manifest length is 0"},
		{"module length 0", edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offModLen:], 0); return b }), trusted, ErrMalformed, nil, "module length is 0"},
		{"manifest length one short", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offManLen:], uint32(len(manifest)-1)); return b }), trusted, ErrMalformed, nil, ""},
		{"module length one long", edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[offModLen:], uint64(len(testModule)+1)); return b }), trusted, ErrMalformed, nil, "truncated"},
		{"unsigned manifest field", assemble(bytes.Replace(manifest, []byte("{\n"), []byte("{\"x\":1,\n"), 1), testModule, testKey(1)), trusted, ErrInvalidManifest, nil, "unknown field"},
		{"invalid manifest", assemble(bytes.Replace(manifest, []byte("CVE-2024-1086"), []byte("CVE-2024-10xx"), 1), testModule, testKey(1)), trusted, ErrInvalidManifest, nil, "cves[0]"},
	} {
		b, err := parseBoth(t, tc.data)
		if tc.parseErr != nil {
			if !errors.Is(err, tc.parseErr) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: Parse() = %v, want %v containing %q", tc.name, err, tc.parseErr, tc.msg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Parse() = %v, want nil", tc.name, err)
			continue
		}
		err = b.Verify(tc.kr)
		if !errors.Is(err, tc.verifErr) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Verify() = %v, want %v containing %q", tc.name, err, tc.verifErr, tc.msg)
		}
	}
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// assembleWithSig builds a bundle of manifest and module that keeps the
// header (key id and signature) of from: an attacker's edit.
func assembleWithSig(manifest, module, from []byte) []byte {
	b := assemble(manifest, module, testKey(1))
	copy(b[offKeyID:HeaderSize], from[offKeyID:HeaderSize])
	return b
}

// TestTruncated cuts a bundle at every length short of its full size: each
// must be refused as malformed, by Parse and by Read alike.
func TestTruncated(t *testing.T) {
	good := makeBundle(t)
	classes := map[string]bool{}
	manEnd := HeaderSize + int(binary.BigEndian.Uint32(good[offManLen:]))
	for n := 0; n < len(good); n++ {
		_, err := parseBoth(t, good[:n])
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(first %d of %d bytes) = %v, want ErrMalformed", n, len(good), err)
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("Parse(first %d bytes) = %T, want a *FormatError", n, err)
		}
		switch {
		case n < len(Magic):
			classes["magic"] = true
		case n < HeaderSize:
			classes["header"] = true
		case n < manEnd:
			classes["manifest"] = true
		default:
			classes["module"] = true
		}
	}
	if len(classes) != 4 {
		t.Errorf("truncations covered %v, want magic, header, manifest and module", classes)
	}
}

// TestReadOversizedHeader checks that Read refuses a header claiming too
// much before reading or allocating for it.
func TestReadOversizedHeader(t *testing.T) {
	hdr := bytes.Clone(makeBundle(t)[:HeaderSize])
	binary.BigEndian.PutUint64(hdr[offModLen:], 1<<62)
	// A reader that fails after the header proves nothing more was read.
	r := io.MultiReader(bytes.NewReader(hdr), iotest.ErrReader(errors.New("read past the header")))
	if _, err := Read(r); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read(header claiming 2^62 bytes) = %v, want ErrTooLarge", err)
	}
	allocs := testing.AllocsPerRun(10, func() { _, _ = Parse(hdr) })
	if allocs > 10 {
		t.Errorf("Parse(header claiming 2^62 bytes) made %v allocations", allocs)
	}
}

func TestReadErrors(t *testing.T) {
	good := makeBundle(t)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"in header", io.MultiReader(bytes.NewReader(good[:10]), iotest.ErrReader(boom))},
		{"in body", io.MultiReader(bytes.NewReader(good[:200]), iotest.ErrReader(boom))},
		{"after body", io.MultiReader(bytes.NewReader(good), iotest.ErrReader(boom))},
	} {
		if _, err := Read(tc.r); !errors.Is(err, boom) {
			t.Errorf("Read(reader failing %s) = %v, want %v", tc.name, err, boom)
		}
	}
	if _, err := Read(iotest.OneByteReader(bytes.NewReader(good))); err != nil {
		t.Errorf("Read(one byte at a time) = %v", err)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.stb")
	if err := os.WriteFile(path, makeBundle(t), 0o644); err != nil {
		t.Fatal(err)
	}
	trusted := NewKeyring(testPub(1))
	b, err := Open(path, trusted)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	if b.Manifest().Name != validManifest().Name {
		t.Errorf("Open(%s).Manifest().Name = %q", path, b.Manifest().Name)
	}
	if _, err := Open(path, NewKeyring(testPub(2))); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(%s, other key) = %v, want ErrUnknownKey naming the file", path, err)
	}
	if _, err := Open(filepath.Join(dir, "missing.stb"), trusted); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(dir, trusted); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(folder) = %v, want not a regular file", err)
	}
	big := filepath.Join(dir, "big.stb")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxSize + 1); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(big, trusted); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Open(file of MaxSize+1 bytes) = %v, want ErrTooLarge", err)
	}
	garbage := filepath.Join(dir, "garbage.stb")
	os.WriteFile(garbage, []byte("not a bundle"), 0o644)
	if _, err := Open(garbage, trusted); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), garbage) {
		t.Errorf("Open(garbage) = %v, want ErrMalformed naming the file", err)
	}
}

func TestKeyID(t *testing.T) {
	id := KeyIDOf(testPub(1))
	s := id.String()
	if len(s) != 16 {
		t.Fatalf("KeyID.String() = %q, want 16 hex digits", s)
	}
	sum := sha256.Sum256(testPub(1))
	if want := hex.EncodeToString(sum[:8]); s != want {
		t.Errorf("KeyIDOf(pub) = %s, want the first 8 bytes of sha256(pub) %s", s, want)
	}
	back, err := ParseKeyID(s)
	if err != nil || back != id {
		t.Errorf("ParseKeyID(%q) = %v, %v, want %v", s, back, err, id)
	}
	j, err := json.Marshal(id)
	if err != nil || string(j) != `"`+s+`"` {
		t.Errorf("json.Marshal(KeyID) = %s, %v, want %q", j, err, s)
	}
	var fromJSON KeyID
	if err := json.Unmarshal(j, &fromJSON); err != nil || fromJSON != id {
		t.Errorf("json.Unmarshal(%s) = %v, %v, want %v", j, fromJSON, err, id)
	}
	if err := json.Unmarshal([]byte(`"xyz"`), &fromJSON); err == nil {
		t.Errorf("json.Unmarshal(\"xyz\") into a KeyID = nil error")
	}
	for _, bad := range []string{"", "abc", s + "00", "zz" + s[2:]} {
		if _, err := ParseKeyID(bad); err == nil {
			t.Errorf("ParseKeyID(%q) = nil error, want an error", bad)
		}
	}
}
