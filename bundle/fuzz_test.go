package bundle

import (
	"bytes"
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
