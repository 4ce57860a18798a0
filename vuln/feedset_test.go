package vuln

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/feedtest"
)

// A FeedSet over real feed files on an HTTPS mirror with ETags and a local
// folder: the first refresh loads them as Load does; the next one is
// answered 304 and changes nothing; garbage, a 503 and an unreachable
// mirror keep the good copy in use and say why; new content makes a new
// generation and wakes the subscribers.
func TestFeedSetRefresh(t *testing.T) {
	mirror := feedtest.New(t)
	mirror.PutFile(t, "/debian/changelog.gz", realChangelog)
	mirror.PutFile(t, "/cna/vulns.tar.gz", "testdata/kernel-cna-sample.tar.gz")
	mirror.PutFile(t, "/nvd/page.json", "testdata/nvd/page.json")
	specs := []FeedSpec{
		{FeedDebianChangelog, mirror.URL + "/debian/changelog.gz"},
		{FeedCNA, mirror.URL + "/cna/vulns.tar.gz"},
		{FeedNVD, mirror.URL + "/nvd/page.json"},
		{FeedOSV, "testdata/osv"},
	}
	cache := t.TempDir()
	fetcher := &Fetcher{Client: mirror.Client(), CacheDir: cache}
	set := NewFeedSet(specs, LoadOptions{Fetcher: fetcher})
	if db, gen := set.DB(); db != nil || gen != 0 {
		t.Fatalf("DB() before any refresh = %v, %d; want nil, 0", db, gen)
	}
	woken, cancel := set.Subscribe()
	defer cancel()
	ctx := context.Background()

	res := set.Refresh(ctx)
	for _, r := range res {
		if r.Err != nil || !r.Changed || r.Prev != -1 || r.Records == 0 {
			t.Errorf("first Refresh: %s = %+v, want it loaded", r.Spec.Location, r)
		}
	}
	db, gen := set.DB()
	if db == nil || gen == 0 {
		t.Fatalf("DB() after the first refresh = %v, %d", db, gen)
	}
	wait(t, woken, "the first DB")
	// The same files loaded by Load make the same records.
	local := []FeedSpec{{FeedDebianChangelog, realChangelog}, {FeedCNA, "testdata/kernel-cna-sample.tar.gz"}, {FeedNVD, "testdata/nvd/page.json"}, {FeedOSV, "testdata/osv"}}
	want, err := Load(ctx, local, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, fi := range db.Feeds {
		if fi.Records != want.Feeds[i].Records || fi.Newest != want.Feeds[i].Newest {
			t.Errorf("feed %d = %d records (newest %q), Load gives %d (%q)", i, fi.Records, fi.Newest, want.Feeds[i].Records, want.Feeds[i].Newest)
		}
	}
	if len(db.Vulns) != len(want.Vulns) {
		t.Errorf("DB has %d CVEs, Load's %d", len(db.Vulns), len(want.Vulns))
	}
	t.Logf("generation %d: %d CVEs from %d + %d + %d + %d records", gen, len(db.Vulns), db.Feeds[0].Records, db.Feeds[1].Records, db.Feeds[2].Records, db.Feeds[3].Records)

	// Nothing changed: revalidated, not downloaded again.
	for _, r := range set.Refresh(ctx) {
		if r.Err != nil || r.Changed {
			t.Errorf("second Refresh: %s = %+v, want unchanged", r.Spec.Location, r)
		}
	}
	for _, p := range []string{"/debian/changelog.gz", "/cna/vulns.tar.gz", "/nvd/page.json"} {
		if full, nm := mirror.Served(p); full != 1 || nm != 1 {
			t.Errorf("%s served %d times in full and %d times 304, want once each", p, full, nm)
		}
	}
	if _, g := set.DB(); g != gen {
		t.Errorf("generation after an unchanged refresh = %d, want %d", g, gen)
	}
	select {
	case <-woken:
		t.Error("an unchanged refresh woke the subscriber")
	default:
	}

	// Garbage from the mirror: refused, the good copy stays in use, in
	// memory and in the cache.
	mirror.Put("/cna/vulns.tar.gz", []byte("<html>502 Bad Gateway</html>"))
	res = set.Refresh(ctx)
	if r := res[1]; r.Err == nil || r.Changed || r.Records != r.Prev || r.Records == 0 {
		t.Errorf("Refresh with garbage = %+v, want an error and the previous records", r)
	}
	st := set.Status()[1]
	if st.Err == nil || !strings.Contains(st.Err.Error(), "refusing the download") || !st.InUse || st.Failures != 1 || st.Info.Records != db.Feeds[1].Records || !st.LastSuccess.Before(st.LastAttempt) {
		t.Errorf("status after garbage = %+v, want the error, the good copy in use, 1 failure", st)
	}
	if _, g := set.DB(); g != gen {
		t.Errorf("generation after garbage = %d, want %d", g, gen)
	}
	offline, err := Load(ctx, specs, LoadOptions{Fetcher: &Fetcher{CacheDir: cache, Offline: true}})
	if err != nil || offline.Feeds[1].Records != db.Feeds[1].Records {
		t.Errorf("offline Load from the cache after garbage = %v; want the good copy", err)
	}

	// The mirror answers 503: the same.
	mirror.Refuse(true)
	res = set.Refresh(ctx)
	mirror.Refuse(false)
	for _, r := range res {
		if r.Spec.Kind != FeedOSV && (r.Err == nil || !strings.Contains(r.Err.Error(), "503") || r.Changed) {
			t.Errorf("Refresh with the mirror down: %s = %+v, want a 503 error", r.Spec.Location, r)
		}
	}
	if st := set.Status()[1]; st.Failures != 2 || !st.InUse {
		t.Errorf("status after 2 failed refreshes = %+v", st)
	}

	// New content: a new generation, one wake-up, the good feed back.
	mirror.PutFile(t, "/cna/vulns.tar.gz", "testdata/kernel-cna-sample.tar.gz")
	mirror.PutFile(t, "/debian/changelog.gz", "testdata/linux-sid.changelog")
	res = set.Refresh(ctx)
	if !res[0].Changed || res[0].Err != nil || res[1].Changed || res[1].Err != nil {
		t.Errorf("Refresh with a new changelog = %+v, %+v; want the changelog changed and the cna feed back, unchanged", res[0], res[1])
	}
	db2, gen2 := set.DB()
	if gen2 <= gen || db2.Feeds[0].Newest == db.Feeds[0].Newest {
		t.Errorf("after a new changelog: generation %d (was %d), newest upload %q (was %q)", gen2, gen, db2.Feeds[0].Newest, db.Feeds[0].Newest)
	}
	wait(t, woken, "the new changelog")
	if st := set.Status()[1]; st.Err != nil || st.Failures != 0 {
		t.Errorf("cna status once served again = %+v, want no error", st)
	}

	// The mirror unreachable: the cached copy stays in use, said stale.
	mirror.Close()
	res = set.Refresh(ctx)
	if r := res[0]; r.Err == nil || !strings.Contains(r.Err.Error(), "server unreachable, using the copy fetched") || r.Changed {
		t.Errorf("Refresh with the mirror gone = %+v, want the stale copy named", r)
	}
	if _, g := set.DB(); g != gen2 {
		t.Errorf("generation with the mirror gone = %d, want %d", g, gen2)
	}
}

// The program's own live patches (a server's published bundles) join the
// DB; the same set again changes nothing.
func TestFeedSetLivePatches(t *testing.T) {
	set := NewFeedSet([]FeedSpec{{FeedDebianChangelog, realChangelog}}, LoadOptions{})
	set.Refresh(context.Background())
	_, gen := set.DB()
	woken, cancel := set.Subscribe()
	defer cancel()
	var p LivePatch
	p.Name, p.CVEs, p.Kernel.Release = "lp_1", []string{"CVE-2024-1086"}, "6.1.0-56-amd64"
	if !set.SetFeed(LivePatchFeed("stent-server published bundles", []LivePatch{p})) {
		t.Fatal("SetFeed(one patch) = false, want a change")
	}
	db, gen2 := set.DB()
	if gen2 <= gen || len(db.Patches) != 1 || db.Patches[0].Name != "lp_1" {
		t.Fatalf("DB after SetFeed = generation %d (was %d), patches %+v", gen2, gen, db.Patches)
	}
	wait(t, woken, "the live patch feed")
	if set.SetFeed(LivePatchFeed("stent-server published bundles", []LivePatch{p})) {
		t.Error("SetFeed(the same patch) = true, want no change")
	}
	st := set.Status()
	if len(st) != 2 || !st[1].Automatic || st[1].Info.Records != 1 {
		t.Errorf("Status() = %+v, want the changelog and the automatic feed of 1 record", st)
	}
	// No patches any more: listed with 0 records, out of the DB.
	if !set.SetFeed(LivePatchFeed("stent-server published bundles", nil)) {
		t.Error("SetFeed(no patches) = false, want a change")
	}
	if db, _ := set.DB(); len(db.Patches) != 0 {
		t.Errorf("DB after the patches went = %+v", db.Patches)
	}
}

// Feeds that cannot make a DB on their own (only NVD scores) make none,
// and DBStatus says why; a feed that does not load at first is not in use.
func TestFeedSetNoFixFeed(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "changelog")
	os.WriteFile(garbage, []byte("not a changelog\n"), 0o644)
	set := NewFeedSet([]FeedSpec{{FeedNVD, "testdata/nvd"}, {FeedDebianChangelog, garbage}}, LoadOptions{})
	res := set.Refresh(context.Background())
	if res[0].Err != nil || res[1].Err == nil || res[1].Records != 0 {
		t.Errorf("Refresh = %+v", res)
	}
	if db, _ := set.DB(); db != nil {
		t.Errorf("DB() = %v, want none", db)
	}
	if _, _, err := set.DBStatus(); !errors.Is(err, ErrNoFixFeed) {
		t.Errorf("DBStatus() err = %v, want ErrNoFixFeed", err)
	}
	if st := set.Status()[1]; st.InUse || st.Err == nil || st.Failures != 1 {
		t.Errorf("status of the garbage changelog = %+v", st)
	}
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no wake-up for %s", what)
	}
}

// The 2,613 real kernel CNA records of Debian's 6.1 CVEs (shared test
// data), served as a .tar.gz by a mirror beside the real changelog: how
// long a FeedSet takes to load them, to revalidate them (304: no download,
// no parse, no new DB) and to make a new DB when another feed changes.
func TestFeedSetRealCNASize(t *testing.T) {
	if testing.Short() {
		t.Skip("unpacks and loads 2,613 records")
	}
	src := filepath.Join(sharedData(t, "kernel-cna-debian61"), "records.tar.xz")
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xJf", src, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xJf %s: %v: %s", src, err, out)
	}
	tgz := filepath.Join(t.TempDir(), "vulns.tar.gz")
	if out, err := exec.Command("tar", "-czf", tgz, "-C", dir, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar -czf: %v: %s", err, out)
	}
	mirror := feedtest.New(t)
	mirror.PutFile(t, "/vulns.tar.gz", tgz)
	mirror.PutFile(t, "/changelog.gz", realChangelog)
	set := NewFeedSet([]FeedSpec{{FeedCNA, mirror.URL + "/vulns.tar.gz"}, {FeedDebianChangelog, mirror.URL + "/changelog.gz"}},
		LoadOptions{Fetcher: &Fetcher{Client: mirror.Client(), CacheDir: t.TempDir()}})
	ctx := context.Background()
	start := time.Now()
	res := set.Refresh(ctx)
	first := time.Since(start)
	if res[0].Err != nil || res[0].Records != 2613 {
		t.Fatalf("first Refresh = %+v, want 2613 records", res[0])
	}
	_, gen := set.DB()
	start = time.Now()
	res = set.Refresh(ctx)
	again := time.Since(start)
	if res[0].Changed || res[1].Changed {
		t.Errorf("revalidation = %+v", res)
	}
	if _, g := set.DB(); g != gen {
		t.Errorf("revalidation made generation %d, want %d", g, gen)
	}
	mirror.PutFile(t, "/changelog.gz", "testdata/linux-sid.changelog")
	start = time.Now()
	res = set.Refresh(ctx)
	changed := time.Since(start)
	if !res[1].Changed || res[0].Changed {
		t.Errorf("refresh with a new changelog = %+v", res)
	}
	db, _ := set.DB()
	t.Logf("2613 CNA records + a changelog: first load %s, revalidation (304) %s, new changelog and DB %s; %d CVEs", first.Round(time.Millisecond), again.Round(time.Millisecond), changed.Round(time.Millisecond), len(db.Vulns))
}

// A refresh parses again only the local feeds whose files changed: the
// others keep the records parsed before (the same parsedFeed), and the DB
// made of both has the changed feed's new content.
func TestFeedSetReusesUnchangedLocalFeeds(t *testing.T) {
	dir := t.TempDir()
	cl := filepath.Join(dir, "changelog")
	orig, err := os.ReadFile("testdata/linux-sid.changelog")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cl, orig, 0o644)
	set := NewFeedSet([]FeedSpec{{FeedCNA, "testdata/cna"}, {FeedDebianChangelog, cl}, {FeedNVD, "testdata/nvd"}}, LoadOptions{})
	for _, r := range set.Refresh(context.Background()) {
		if r.Err != nil {
			t.Fatalf("first refresh: %v", r.Err)
		}
	}
	before := []*parsedFeed{set.feeds[0].cur.pf, set.feeds[1].cur.pf, set.feeds[2].cur.pf}
	db1, gen1 := set.DB()
	// The same files: nothing parsed, nothing new.
	set.Refresh(context.Background())
	for i, st := range set.feeds {
		if st.cur.pf != before[i] {
			t.Errorf("feed %s parsed again though its files did not change", st.spec.Kind)
		}
	}
	if _, gen := set.DB(); gen != gen1 {
		t.Errorf("generation %d after a refresh of unchanged files, want %d", gen, gen1)
	}
	// The changelog loses its newest upload: only it is parsed again.
	i := strings.Index(string(orig), "\nlinux (")
	os.WriteFile(cl, orig[i+1:], 0o644)
	res := set.Refresh(context.Background())
	if !res[1].Changed || res[0].Changed || res[2].Changed {
		t.Errorf("Refresh = %+v, want the changelog changed only", res)
	}
	if set.feeds[0].cur.pf != before[0] || set.feeds[2].cur.pf != before[2] {
		t.Error("unchanged feeds parsed again")
	}
	if set.feeds[1].cur.pf == before[1] {
		t.Fatal("the changed changelog was not parsed again")
	}
	db2, _ := set.DB()
	if db2 == db1 || db2.Feeds[1].Newest == db1.Feeds[1].Newest {
		t.Errorf("the new DB's changelog says newest %q, as the old one (%q)", db2.Feeds[1].Newest, db1.Feeds[1].Newest)
	}
}
