package vuln

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/atomicfile"
)

// Fetcher downloads feeds over HTTPS into a cache folder. A cached copy is
// revalidated with If-None-Match / If-Modified-Since, and replaced only by a
// download that the caller's check accepted, so the cache never holds a
// partial or malformed feed.
type Fetcher struct {
	Client   *http.Client // nil: http.DefaultClient
	CacheDir string
	Log      *slog.Logger // nil: discard
	// Offline makes Fetch use the cached copy without asking the server.
	Offline bool
}

// FetchResult says where a fetched feed is and how fresh it is.
type FetchResult struct {
	Path      string
	FetchedAt time.Time
	FromCache bool   // the server said 304, or Offline
	Stale     string // set when the server could not be reached and the cache was used: the error
}

type cacheMeta struct {
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	FetchedAt    time.Time `json:"fetched_at"`
}

// ErrNotCached is returned by an offline Fetch of a URL never fetched.
var ErrNotCached = errors.New("feed not in cache")

// Fetch downloads rawURL (https only) unless the cached copy is current.
// check is run on the downloaded file before it replaces the cached one;
// a failing check leaves the cache as it was and returns the error.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string, check func(path string) error) (FetchResult, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return FetchResult{}, fmt.Errorf("feed url %q: %w", rawURL, err)
	}
	if u.Scheme != "https" {
		return FetchResult{}, fmt.Errorf("feed url %q: only https is allowed", rawURL)
	}
	if f.CacheDir == "" {
		return FetchResult{}, errors.New("fetch feed: no cache folder configured")
	}
	if err := os.MkdirAll(f.CacheDir, 0o755); err != nil {
		return FetchResult{}, fmt.Errorf("fetch feed: %w", err)
	}
	sum := sha256.Sum256([]byte(rawURL))
	base := path.Base(u.Path)
	if base == "." || base == "/" || base == "" {
		base = "feed"
	}
	base = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, base)
	dataPath := filepath.Join(f.CacheDir, hex.EncodeToString(sum[:8])+"-"+base)
	metaPath := dataPath + ".meta.json"
	var meta cacheMeta
	haveCache := false
	if b, err := os.ReadFile(metaPath); err == nil && json.Unmarshal(b, &meta) == nil && meta.URL == rawURL {
		if _, err := os.Stat(dataPath); err == nil {
			haveCache = true
		}
	}
	if f.Offline {
		if !haveCache {
			return FetchResult{}, fmt.Errorf("%s: %w (fetch it once online)", rawURL, ErrNotCached)
		}
		return FetchResult{Path: dataPath, FetchedAt: meta.FetchedAt, FromCache: true}, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return FetchResult{}, err
	}
	if haveCache {
		if meta.ETag != "" {
			req.Header.Set("If-None-Match", meta.ETag)
		}
		if meta.LastModified != "" {
			req.Header.Set("If-Modified-Since", meta.LastModified)
		}
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if haveCache && ctx.Err() == nil {
			f.logger().Warn("feed server unreachable; using cached copy", "url", rawURL, "fetched_at", meta.FetchedAt, "err", err)
			return FetchResult{Path: dataPath, FetchedAt: meta.FetchedAt, FromCache: true, Stale: err.Error()}, nil
		}
		return FetchResult{}, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && haveCache:
		return FetchResult{Path: dataPath, FetchedAt: meta.FetchedAt, FromCache: true}, nil
	case resp.StatusCode != http.StatusOK:
		return FetchResult{}, fmt.Errorf("fetch %s: server answered %s", rawURL, resp.Status)
	}
	tmp, err := os.CreateTemp(f.CacheDir, ".fetch-*-"+base)
	if err != nil {
		return FetchResult{}, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(resp.Body, maxFeedFile+1))
	if err == nil && n > maxFeedFile {
		err = fmt.Errorf("larger than %d MiB", maxFeedFile>>20)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FetchResult{}, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	if check != nil {
		if err := check(tmp.Name()); err != nil {
			// Name the download by its URL, not by the temporary file.
			var pe *ParseError
			if errors.As(err, &pe) && strings.HasPrefix(pe.File, tmp.Name()) {
				pe.File = rawURL + strings.TrimPrefix(pe.File, tmp.Name())
			}
			return FetchResult{}, fmt.Errorf("refusing the download of %s: %w", rawURL, err)
		}
	}
	if err := os.Rename(tmp.Name(), dataPath); err != nil {
		return FetchResult{}, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	meta = cacheMeta{URL: rawURL, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), FetchedAt: time.Now().UTC()}
	if err := atomicfile.Write(metaPath, mustJSON(meta), 0o644); err != nil {
		return FetchResult{}, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	syncDir(f.CacheDir)
	return FetchResult{Path: dataPath, FetchedAt: meta.FetchedAt}, nil
}

func (f *Fetcher) logger() *slog.Logger {
	if f.Log != nil {
		return f.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
