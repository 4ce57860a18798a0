package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"testing"
)

// FuzzParse checks that Parse never panics, that Read agrees with it, and
// that the only bytes that verify under the test key are the bundle it
// signed: no edit anywhere in a bundle keeps it valid.
func FuzzParse(f *testing.F) {
	good := makeBundle(f)
	f.Add(good)
	f.Add(good[:HeaderSize])
	f.Add(good[:HeaderSize+10])
	f.Add(append(bytes.Clone(good), 0))
	f.Add([]byte(Magic))
	f.Add([]byte{})
	big := bytes.Clone(good[:HeaderSize])
	binary.BigEndian.PutUint64(big[offModLen:], 1<<63)
	f.Add(big)
	kr := NewKeyring(testPub(1), testPub(2))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		b2, err2 := Read(bytes.NewReader(data))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Parse() = %v but Read() = %v", err, err2)
		}
		if err != nil {
			if b != nil || b2 != nil {
				t.Fatalf("Parse or Read returned a bundle and an error")
			}
			return
		}
		if err := b.Manifest().Validate(); err != nil {
			t.Fatalf("Parse() accepted a manifest that does not validate: %v", err)
		}
		if !bytes.Equal(b.Module(), b2.Module()) || !bytes.Equal(b.ManifestBytes(), b2.ManifestBytes()) {
			t.Fatalf("Parse and Read disagree")
		}
		if err := b.Verify(kr); err == nil && !bytes.Equal(data, good) {
			t.Fatalf("Verify() accepted bytes that differ from the signed bundle")
		}
	})
}

// FuzzDecodeManifest checks that manifest decoding never panics and that a
// manifest it accepts and validates encodes and decodes to the same value.
func FuzzDecodeManifest(f *testing.F) {
	good, _ := encodeManifest(validManifest())
	f.Add(good)
	f.Add([]byte(`{"name":"a","name":"b"}`))
	f.Add([]byte(`{"functions":[[[[]]]]}`))
	f.Add([]byte(`{"Name":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil || m.Validate() != nil {
			return
		}
		again, err := encodeManifest(m)
		if err != nil {
			t.Fatalf("encode an accepted manifest: %v", err)
		}
		m2, err := DecodeManifest(again)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if err := m2.Validate(); err != nil {
			t.Fatalf("re-encoded manifest does not validate: %v", err)
		}
	})
}

// FuzzPublicKeyPEM: a trusted key file's bytes never panic the parser, and
// a key it accepts encodes back to a file that parses to the same key.
func FuzzPublicKeyPEM(f *testing.F) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	good, _ := EncodePublicKey(pub)
	f.Add(good)
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add(append(bytes.Clone(good), "trailing"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parsePublicKey("k.pub", data)
		if err != nil {
			return
		}
		again, err := EncodePublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if k2, err := parsePublicKey("k.pub", again); err != nil || !k2.Equal(k) {
			t.Errorf("parsePublicKey(EncodePublicKey(%x)) = %x, %v", k, k2, err)
		}
	})
}
