package bundle

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on with errors.Is. The errors returned
// by this package wrap one of them and add what did not match.
var (
	// ErrMalformed: the bytes are not a well-formed bundle (bad magic,
	// truncated, trailing bytes, bad manifest JSON).
	ErrMalformed = errors.New("malformed bundle")
	// ErrTooLarge: a length in the header, or the file, is over its limit.
	ErrTooLarge = errors.New("bundle too large")
	// ErrUnknownVersion: the container or manifest version is not one this
	// build of stent understands.
	ErrUnknownVersion = errors.New("unknown bundle version")
	// ErrInvalidManifest: the manifest decodes but a field is invalid.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrDigestMismatch: the module bytes do not match the manifest's
	// module_sha256 or module_size.
	ErrDigestMismatch = errors.New("module digest mismatch")
	// ErrUnknownKey: the bundle names a signing key that is not trusted.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrBadSignature: the signature does not verify under the named key.
	ErrBadSignature = errors.New("bad signature")
)

// FormatError reports where in a bundle's bytes parsing stopped.
type FormatError struct {
	Offset int64  // byte offset in the bundle the problem was found at
	Msg    string // what was wrong, e.g. "manifest length 9999999 over limit 1048576"
	Err    error  // ErrMalformed, ErrTooLarge or ErrUnknownVersion
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%v at byte %d: %s", e.Err, e.Offset, e.Msg)
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(sentinel error, off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...), Err: sentinel}
}

// FieldError names a manifest field that failed validation. Field is the
// JSON path, e.g. "kernel.release" or "functions[2].name".
type FieldError struct {
	Field string
	Msg   string
	Err   error // ErrInvalidManifest, or ErrUnknownVersion for format_version
}

func (e *FieldError) Error() string { return fmt.Sprintf("manifest field %s: %s", e.Field, e.Msg) }

func (e *FieldError) Unwrap() error { return e.Err }
