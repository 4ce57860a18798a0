package api

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a host may send. They are what the fields can
// legitimately be, so a host cannot use them to fill the server's disk.
const (
	MaxHostname     = 253  // a fully qualified DNS name (RFC 1035)
	MaxMachineID    = 128  // /etc/machine-id is 32 hex digits; room for other schemes
	MaxPatchName    = 55   // MODULE_NAME_LEN (56 with the NUL on 64-bit kernels)
	MaxPatches      = 256  // live patches one kernel can hold, with room to spare
	MaxRelease      = 64   // sizeof(utsname.release) less the NUL
	MaxBuildID      = 128  // hex of a GNU build id (usually 40)
	MaxBootID       = 64   // /proc/sys/kernel/random/boot_id (36)
	MaxAgentVersion = 64   //
	MaxHealthDetail = 1024 // one line of what the post-apply checks saw
	MaxRequestID    = 128
	MaxReportError  = 4096
	MaxRolloutID    = 64 // "r_" and 16 hex digits
	MaxSHA256       = 64
)

func isNameByte(c byte, extra string) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0
}

func allBytes(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i], extra) {
			return false
		}
	}
	return true
}

// CheckHostname accepts a host name of 1 to MaxHostname letters, digits,
// '.', '-' and '_' (no spaces, control characters or other scripts, so it
// shows the same on every terminal).
func CheckHostname(s string) error {
	if s == "" || len(s) > MaxHostname || !allBytes(s, ".-_") {
		return fmt.Errorf("hostname %s: want 1 to %d letters, digits, '.', '-' and '_'", Escape(trunc(s, 64)), MaxHostname)
	}
	return nil
}

// CheckMachineID accepts an empty machine ID or one of letters, digits
// and '-' up to MaxMachineID bytes.
func CheckMachineID(s string) error {
	if len(s) > MaxMachineID || !allBytes(s, "-") {
		return fmt.Errorf("machine_id %s: want at most %d letters, digits and '-' (the contents of /etc/machine-id)", Escape(trunc(s, 64)), MaxMachineID)
	}
	return nil
}

// CheckPatchName accepts a live patch (kernel module) name: 1 to
// MaxPatchName letters, digits, '_' and '-'.
func CheckPatchName(s string) error {
	if s == "" || len(s) > MaxPatchName || !allBytes(s, "_-") {
		return fmt.Errorf("patch name %s: want 1 to %d letters, digits, '_' and '-'", Escape(trunc(s, 64)), MaxPatchName)
	}
	return nil
}

// CheckToken accepts an identifier the server made or a host chose (a
// request id, a rollout id, a sha256, a kernel release, a build id, a boot
// id, an agent version): printable ASCII without spaces, at most max bytes;
// empty when optional.
func CheckToken(field, s string, max int, optional bool) error {
	if (s == "" && !optional) || len(s) > max || !allBytes(s, "._-+:~/") {
		return fmt.Errorf("%s %s: want %s to %d letters, digits and ._-+:~/", field, Escape(trunc(s, 64)), map[bool]string{true: "0", false: "1"}[optional], max)
	}
	return nil
}

// CheckHealth accepts one of the health values an agent reports.
func CheckHealth(s string) error {
	switch s {
	case HealthOK, HealthDegraded, HealthUnknown:
		return nil
	}
	return fmt.Errorf("health %s: want ok, degraded or empty", Escape(trunc(s, 64)))
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Escape makes text that came from a host safe to print on a terminal:
// control characters (ESC, CR, ...), Unicode format characters (bidi
// overrides, zero-width joiners) and invalid UTF-8 are written as Go
// escapes (\x1b, \u202e); everything else is kept.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) ||
		r == '\u2028' || r == '\u2029' // line and paragraph separators
}
