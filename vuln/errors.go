package vuln

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is matched (errors.Is) by every *ParseError: a feed that does
// not parse is refused as a whole, except for the few odd records of a cna
// feed that ParseFeed skips and counts (FeedInfo.Skipped).
var ErrMalformed = errors.New("malformed feed")

// ParseError names where a feed is malformed: the file, the line and column
// (when known) and the field, as a JSON path or a changelog element.
type ParseError struct {
	File   string
	Line   int // 1-based; 0 when unknown
	Column int // 1-based; 0 when unknown
	Field  string
	Err    error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrMalformed) true for every ParseError.
func (e *ParseError) Is(target error) bool { return target == ErrMalformed }

// jsonError turns an encoding/json error on data into a ParseError with a
// line and column.
func jsonError(file string, data []byte, err error) error {
	var off int64 = -1
	field := ""
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
		field = te.Field
		err = fmt.Errorf("want %s, got JSON %s", te.Type, te.Value)
	}
	pe := &ParseError{File: file, Field: field, Err: err}
	if off >= 0 {
		pe.Line, pe.Column = lineCol(data, off)
	}
	return pe
}

// lineCol converts a byte offset into a 1-based line and column.
func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// missing is the error for a required field that is absent or empty.
func missing(file, field string) error {
	return &ParseError{File: file, Field: field, Err: errors.New("missing required field")}
}
