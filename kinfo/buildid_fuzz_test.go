package kinfo

import (
	"encoding/binary"
	"testing"
)

// FuzzParseBuildID: /sys/kernel/notes content never panics the parser.
func FuzzParseBuildID(f *testing.F) {
	note := func(name string, typ uint32, desc []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(name)+1))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
		b = binary.LittleEndian.AppendUint32(b, typ)
		b = append(b, name...)
		for len(b)%4 != 0 || len(b) < 12+len(name)+1 {
			b = append(b, 0)
		}
		return append(b, desc...)
	}
	f.Add(note("GNU", 3, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}))
	f.Add(append(note("Xen", 1, []byte{1, 2, 3, 4}), note("GNU", 3, []byte{0xaa, 0xbb})...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, notes []byte) {
		ParseBuildID(notes)
	})
}
