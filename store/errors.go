package store

import (
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Kinds of store failure the server answers differently from a bug.
var (
	// ErrFull: the disk (or the database's quota) is full.
	ErrFull = errors.New("store full")
	// ErrUnavailable: the store cannot be written now (read-only file
	// system or database, database down or restarting, busy too long).
	ErrUnavailable = errors.New("store unavailable")
)

// SQLite primary result codes (sqlite3.h).
const (
	sqliteBusy     = 5
	sqliteLocked   = 6
	sqliteReadOnly = 8
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteCantOpen = 14
)

// Classify returns ErrFull or ErrUnavailable for a store error of one of
// those kinds, and nil for any other (a bug, a constraint, bad input).
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrFull) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ErrFull
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, syscall.EROFS) || errors.Is(err, driver.ErrBadConn) {
		return ErrUnavailable
	}
	var se interface{ Code() int }
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteFull:
			return ErrFull
		case sqliteReadOnly, sqliteIOErr, sqliteCantOpen, sqliteBusy, sqliteLocked:
			return ErrUnavailable
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "53100": // disk_full
			return ErrFull
		case strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57P"), pe.Code == "25006":
			// insufficient resources, connection, shutdown, read-only transaction
			return ErrUnavailable
		}
	}
	var ne net.Error
	if errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return ErrUnavailable
	}
	return nil
}
