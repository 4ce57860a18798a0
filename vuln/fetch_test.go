package vuln

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

func TestFetcherCachesAndRefusesBadDownloads(t *testing.T) {
	good, err := os.ReadFile("testdata/nvd/page.json")
	if err != nil {
		t.Fatal(err)
	}
	var body atomic.Value
	body.Store(good)
	var hits, notModified atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b := body.Load().([]byte)
		etag := fmt.Sprintf(`"%d"`, len(b))
		if r.Header.Get("If-None-Match") == etag {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write(b)
	}))
	defer srv.Close()
	f := &Fetcher{Client: srv.Client(), CacheDir: t.TempDir()}
	url := srv.URL + "/rest/json/cves/2.0?keywordSearch=linux"
	load := func() (*DB, error) {
		return Load(t.Context(), []FeedSpec{{FeedNVD, url}, {FeedDebianChangelog, realChangelog}}, LoadOptions{Fetcher: f})
	}
	db, err := load()
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if v := db.Lookup("CVE-2026-99228"); v == nil || v.Severity.Score != 7.8 {
		t.Fatalf("CVE-2026-99228 = %+v, want scored 7.8 by NVD", v)
	}
	if db.Feeds[0].FetchedAt == nil {
		t.Error("FeedInfo.FetchedAt not set")
	}
	// Second load: revalidated, served from the cache.
	if _, err := load(); err != nil {
		t.Fatal(err)
	}
	if notModified.Load() != 1 {
		t.Errorf("%d 304 answers, want 1", notModified.Load())
	}
	// A malformed download is refused and the cached copy stays.
	body.Store([]byte(`{"format":"NVD_CVE","vulnerabilities":[{"cve":{}}]}`))
	if _, err := load(); err == nil || !strings.Contains(err.Error(), "refusing the download of "+url+": "+url+": vulnerabilities[0].cve.id") || strings.Contains(err.Error(), ".fetch-") {
		t.Errorf("Load(malformed) = %v, want refusal naming the field", err)
	}
	f.Offline = true
	if db, err := load(); err != nil || db.Lookup("CVE-2026-99228").Severity.Score != 7.8 {
		t.Errorf("offline Load = %v, want the good cached copy", err)
	}
	// Unreachable server: the cache is used and the feed says so.
	f.Offline = false
	srv.Close()
	db, err = load()
	if err != nil || db.Feeds[0].Stale == "" {
		t.Errorf("Load(unreachable) = %v, stale %q; want the cached copy, marked stale", err, db.Feeds[0].Stale)
	}
	// Plain http is refused.
	if _, err := f.Fetch(t.Context(), "http://example.invalid/x", nil); err == nil || !strings.Contains(err.Error(), "only https") {
		t.Errorf("Fetch(http) = %v", err)
	}
}

func TestFetchNVDPaging(t *testing.T) {
	mk := func(start int, id string) string {
		return fmt.Sprintf(`{"format":"NVD_CVE","version":"2.0","startIndex":%d,"resultsPerPage":1,"totalResults":2,"vulnerabilities":[{"cve":{"id":%q}}]}`, start, id)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("startIndex") == "1" {
			fmt.Fprint(w, mk(1, "CVE-2026-99255"))
			return
		}
		fmt.Fprint(w, mk(0, "CVE-2026-99228"))
	}))
	defer srv.Close()
	f := &Fetcher{Client: srv.Client(), CacheDir: t.TempDir()}
	pf, _, err := fetchNVDPages(t.Context(), FeedSpec{FeedNVD, srv.URL + "/cves"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.nvd) != 2 || pf.nvd[1].ID != "CVE-2026-99255" {
		t.Errorf("pages gave %d records", len(pf.nvd))
	}
}
