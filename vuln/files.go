package vuln

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// maxFeedFile bounds one file of a feed, so a hostile archive cannot make
// the planner read without end.
const maxFeedFile = 512 << 20

// feedFile is one file of a feed: its name for error messages and its bytes.
type feedFile struct {
	name string
	data []byte
}

// readFeedFiles returns the files of a feed at path whose base name keep
// accepts: the files under a folder, the members of a .tar, .tar.gz, .tgz
// or .zip archive, or the file itself. They come sorted by name.
func readFeedFiles(path string, keep func(base string) bool) ([]feedFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var out []feedFile
	switch lower := strings.ToLower(path); {
	case st.IsDir():
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != path {
				return filepath.SkipDir
			}
			if !d.Type().IsRegular() || !keep(d.Name()) {
				return nil
			}
			data, err := readLimited(p)
			if err != nil {
				return err
			}
			out = append(out, feedFile{name: p, data: data})
			return nil
		})
	case strings.HasSuffix(lower, ".tar.gz") || strings.HasSuffix(lower, ".tgz") || strings.HasSuffix(lower, ".tar"):
		out, err = readTar(path, keep)
	case strings.HasSuffix(lower, ".zip"):
		out, err = readZip(path, keep)
	default:
		var data []byte
		data, err = readLimited(path)
		out = []feedFile{{name: path, data: data}}
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllLimited(p, f)
}

func readAllLimited(name string, r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFeedFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxFeedFile {
		return nil, &ParseError{File: name, Err: fmt.Errorf("larger than %d MiB", maxFeedFile>>20)}
	}
	return data, nil
}

func readTar(path string, keep func(string) bool) ([]feedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if !strings.HasSuffix(strings.ToLower(path), ".tar") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, &ParseError{File: path, Err: fmt.Errorf("gzip: %w", err)}
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	var out []feedFile
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, &ParseError{File: path, Err: fmt.Errorf("tar: %w", err)}
		}
		if h.Typeflag != tar.TypeReg || !keep(filepath.Base(h.Name)) {
			continue
		}
		name := path + ":" + h.Name
		data, err := readAllLimited(name, tr)
		if err != nil {
			return nil, err
		}
		out = append(out, feedFile{name: name, data: data})
	}
}

func readZip(path string, keep func(string) bool) ([]feedFile, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, &ParseError{File: path, Err: fmt.Errorf("zip: %w", err)}
	}
	defer zr.Close()
	var out []feedFile
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() || !keep(filepath.Base(zf.Name)) {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, &ParseError{File: path + ":" + zf.Name, Err: err}
		}
		data, err := readAllLimited(path+":"+zf.Name, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, feedFile{name: path + ":" + zf.Name, data: data})
	}
	return out, nil
}

// readFiles is readFeedFiles that also sets the feed's digest.
func (p *parsedFeed) readFiles(path string, keep func(base string) bool) ([]feedFile, error) {
	files, err := readFeedFiles(path, keep)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f.name), len(f.data))
		h.Write(f.data)
	}
	p.digest = hex.EncodeToString(h.Sum(nil))
	return files, nil
}
