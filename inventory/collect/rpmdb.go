package collect

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the sqlite rpmdb, read without cgo
)

// RPM header tags and types (rpm's lib/rpmtag.h).
const (
	rpmtagName        = 1000
	rpmtagVersion     = 1001
	rpmtagRelease     = 1002
	rpmtagEpoch       = 1003
	rpmtagInstallTime = 1008
	rpmtagArch        = 1022

	rpmInt32  = 4
	rpmString = 6
)

// rpmHeader holds the tags Stent reads from one package header.
type rpmHeader struct {
	Name, Version, Release, Arch string
	Epoch                        *int
	InstallTime                  time.Time
}

// evr is the package's [epoch:]version-release.
func (h rpmHeader) evr() string {
	s := h.Version + "-" + h.Release
	if h.Epoch != nil && *h.Epoch != 0 {
		s = strconv.Itoa(*h.Epoch) + ":" + s
	}
	return s
}

// parseRPMHeader parses an rpm header blob as the rpmdb stores it: the
// index length and data length (big-endian uint32 each), the index entries
// (tag, type, offset, count; 16 bytes each), then the data store.
func parseRPMHeader(b []byte) (rpmHeader, error) {
	var h rpmHeader
	if len(b) < 8 {
		return h, errors.New("rpm header: shorter than 8 bytes")
	}
	il, dl := binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8])
	if il > 0xffff || dl > 256<<20 {
		return h, fmt.Errorf("rpm header: implausible sizes (%d entries, %d data bytes)", il, dl)
	}
	dataStart := 8 + 16*int(il)
	if len(b) < dataStart+int(dl) {
		return h, fmt.Errorf("rpm header: %d bytes, want at least %d", len(b), dataStart+int(dl))
	}
	data := b[dataStart : dataStart+int(dl)]
	for i := 0; i < int(il); i++ {
		e := b[8+16*i : 8+16*(i+1)]
		tag := binary.BigEndian.Uint32(e[0:4])
		typ := binary.BigEndian.Uint32(e[4:8])
		off := binary.BigEndian.Uint32(e[8:12])
		count := binary.BigEndian.Uint32(e[12:16])
		if int64(off) >= int64(len(data)) {
			continue
		}
		str := func() (string, error) {
			if typ != rpmString {
				return "", fmt.Errorf("rpm header: tag %d: type %d, want string", tag, typ)
			}
			end := strings.IndexByte(string(data[off:]), 0)
			if end < 0 {
				return "", fmt.Errorf("rpm header: tag %d: unterminated string at data offset %d", tag, off)
			}
			return string(data[off : int(off)+end]), nil
		}
		i32 := func() (int64, error) {
			if typ != rpmInt32 || count < 1 || int(off)+4 > len(data) {
				return 0, fmt.Errorf("rpm header: tag %d: bad int32 at data offset %d", tag, off)
			}
			return int64(binary.BigEndian.Uint32(data[off : off+4])), nil
		}
		var err error
		switch tag {
		case rpmtagName:
			h.Name, err = str()
		case rpmtagVersion:
			h.Version, err = str()
		case rpmtagRelease:
			h.Release, err = str()
		case rpmtagArch:
			h.Arch, err = str()
		case rpmtagEpoch:
			var v int64
			if v, err = i32(); err == nil {
				e := int(v)
				h.Epoch = &e
			}
		case rpmtagInstallTime:
			var v int64
			if v, err = i32(); err == nil {
				h.InstallTime = time.Unix(v, 0).UTC()
			}
		}
		if err != nil {
			return rpmHeader{}, err
		}
	}
	if h.Name == "" || h.Version == "" {
		return rpmHeader{}, errors.New("rpm header: no name or version")
	}
	return h, nil
}

// readRPMDBSqlite reads the packages of an sqlite rpmdb (rpm 4.16 and
// later: RHEL 9, Fedora 33+) directly, without rpm.
func readRPMDBSqlite(ctx context.Context, path string) ([]rpmHeader, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return nil, fmt.Errorf("open rpmdb %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT hnum, blob FROM Packages ORDER BY hnum")
	if err != nil {
		return nil, fmt.Errorf("read rpmdb %s: %w", path, err)
	}
	defer rows.Close()
	var out []rpmHeader
	for rows.Next() {
		var hnum int64
		var blob []byte
		if err := rows.Scan(&hnum, &blob); err != nil {
			return nil, fmt.Errorf("read rpmdb %s: %w", path, err)
		}
		h, err := parseRPMHeader(blob)
		if err != nil {
			return nil, fmt.Errorf("rpmdb %s: package %d: %w", path, hnum, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rpmdb %s: %w", path, err)
	}
	return out, nil
}

// readRPMQuery asks the rpm tool, for rpmdbs in the older Berkeley DB or
// ndb formats (RHEL 7 and 8, SUSE). It is used only on the real root.
func readRPMQuery(ctx context.Context) ([]rpmHeader, error) {
	out, err := exec.CommandContext(ctx, "rpm", "-qa", "--queryformat", `%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{INSTALLTIME}\n`).Output()
	if err != nil {
		return nil, fmt.Errorf("rpm -qa: %w", err)
	}
	var hs []rpmHeader
	for n, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("rpm -qa: line %d: want 6 fields, got %q", n+1, line)
		}
		h := rpmHeader{Name: f[0], Version: f[2], Release: f[3], Arch: f[4]}
		if e, err := strconv.Atoi(f[1]); err == nil {
			h.Epoch = &e
		}
		if t, err := strconv.ParseInt(f[5], 10, 64); err == nil {
			h.InstallTime = time.Unix(t, 0).UTC()
		}
		hs = append(hs, h)
	}
	return hs, nil
}
