package kinfo

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// TaintFlag is one bit of /proc/sys/kernel/tainted.
type TaintFlag struct {
	Bit    int    `json:"bit"`
	Letter string `json:"letter"`
	Reason string `json:"reason"`
}

// taintFlags follows the kernel's taint table (kernel/panic.c); the letters
// are those printed in oops messages.
var taintFlags = []TaintFlag{
	{0, "P", "proprietary module loaded"},
	{1, "F", "module force loaded"},
	{2, "S", "kernel running on an out-of-spec system"},
	{3, "R", "module force unloaded"},
	{4, "M", "machine check exception occurred"},
	{5, "B", "bad page referenced or unexpected page flags"},
	{6, "U", "taint requested by user"},
	{7, "D", "kernel died recently (oops or BUG)"},
	{8, "A", "ACPI table overridden by user"},
	{9, "W", "kernel issued a warning"},
	{10, "C", "staging driver loaded"},
	{11, "I", "workaround for platform firmware bug"},
	{12, "O", "externally-built (out-of-tree) module loaded"},
	{13, "E", "unsigned module loaded"},
	{14, "L", "soft lockup occurred"},
	{15, "K", "kernel has been live patched"},
	{16, "X", "auxiliary taint (distribution-defined)"},
	{17, "T", "kernel built with struct randomization plugin"},
	{18, "N", "in-kernel test module loaded"},
	{19, "J", "userspace used a mutating debug operation in fwctl"},
}

// Taint is the decoded value of /proc/sys/kernel/tainted.
type Taint struct {
	Value uint64      `json:"value"`
	Flags []TaintFlag `json:"flags"`
}

// String returns the letters of the set flags, as the kernel prints them.
func (t Taint) String() string {
	s := ""
	for _, f := range t.Flags {
		s += f.Letter
	}
	return s
}

// DecodeTaint decodes a taint bitmask. Bits the table does not know are
// reported with a "?" letter so nothing is silently dropped.
func DecodeTaint(v uint64) Taint {
	t := Taint{Value: v, Flags: []TaintFlag{}}
	for bit := 0; bit < 64; bit++ {
		if v&(1<<bit) == 0 {
			continue
		}
		if bit < len(taintFlags) {
			t.Flags = append(t.Flags, taintFlags[bit])
		} else {
			t.Flags = append(t.Flags, TaintFlag{Bit: bit, Letter: "?", Reason: fmt.Sprintf("unknown taint bit %d", bit)})
		}
	}
	return t
}

// ReadTaint reads and decodes /proc/sys/kernel/tainted under the
// filesystem root root.
func ReadTaint(root string) (Taint, error) {
	s, err := readTrim(root, filepath.Join("proc/sys/kernel/tainted"))
	if err != nil {
		return Taint{}, err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return Taint{}, fmt.Errorf("parse /proc/sys/kernel/tainted %q: %w", s, err)
	}
	return DecodeTaint(v), nil
}
