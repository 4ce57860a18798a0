package vuln

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const realChangelog = "testdata/linux-image-6.1.0-56-amd64.changelog.gz"

func parseRealChangelog(t testing.TB) *DebianChangelog {
	t.Helper()
	f, err := os.Open(realChangelog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cl, err := ParseDebianChangelog(realChangelog, f)
	if err != nil {
		t.Fatalf("ParseDebianChangelog(%s) = %v", realChangelog, err)
	}
	return cl
}

// The changelog of Debian's linux-image-6.1.0-56-amd64 package (6.1.192-2),
// trimmed to its 6.1 uploads.
func TestParseDebianChangelogReal(t *testing.T) {
	cl := parseRealChangelog(t)
	if got := len(cl.Uploads); got != 70 {
		t.Errorf("len(Uploads) = %d, want 70", got)
	}
	top := cl.Uploads[0]
	// The signed wrapper's entry stands for the linux upload it signs.
	if top.Source != "linux" || top.Version != "6.1.192-2" || top.Urgency != "high" {
		t.Errorf("Uploads[0] = %s %s urgency=%s, want linux 6.1.192-2 urgency=high", top.Source, top.Version, top.Urgency)
	}
	wantDate := time.Date(2026, 11, 16, 10, 17, 40, 0, time.UTC)
	if !top.Date.Equal(wantDate) {
		t.Errorf("Uploads[0].Date = %v, want %v", top.Date, wantDate)
	}
	u := cl.Uploads[1]
	if u.Version != "6.1.192-1" || u.Distribution != "bookworm-security" || u.Line != 9 {
		t.Errorf("Uploads[1] = %s %s line %d, want 6.1.192-1 bookworm-security line 9", u.Version, u.Distribution, u.Line)
	}
	// IDs wrapped onto a continuation line are found too.
	for _, id := range []string{"CVE-2026-99228", "CVE-2026-89761", "CVE-2026-89680"} {
		if !contains(u.CVEs, id) {
			t.Errorf("Uploads[1].CVEs lacks %s", id)
		}
	}
	last := cl.Uploads[len(cl.Uploads)-1]
	if last.Version != "6.1~rc3-1~exp1" || last.Distribution != "experimental" {
		t.Errorf("last upload = %s %s, want 6.1~rc3-1~exp1 experimental", last.Version, last.Distribution)
	}
	total := 0
	for _, u := range cl.Uploads {
		total += len(u.CVEs)
	}
	if total < 2000 {
		t.Errorf("%d CVE mentions in the 6.1 uploads, want more than 2000", total)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The mapping from package version to fixes: a host on version V is fixed
// for every CVE named by uploads up to V (a CVE named twice from the last
// naming on).
func TestDebianTrackFixes(t *testing.T) {
	db, err := buildFrom(t, FeedSpec{FeedDebianChangelog, realChangelog})
	if err != nil {
		t.Fatal(err)
	}
	tr := db.tracks[trackKey{"Debian", "12", "linux"}]
	if tr == nil {
		t.Fatalf("no Debian 12 track; have %v", db.Tracks())
	}
	host := Host{Distro: "debian", Release: "12", Package: "linux", Scheme: SchemeDeb, upstreamBased: true, osvName: "Debian"}
	tests := []struct {
		cve, running string
		want         verdictStatus
		fixedIn      string
	}{
		{"CVE-2026-99228", "6.1.192-1", vFixed, ""},
		{"CVE-2026-99228", "6.1.190-1", vAffected, "6.1.192-1"},
		{"CVE-2026-99228", "6.1.192-2", vFixed, ""},
		// Named in 6.1.90-1 and again in 6.1.192-1: fixed only from the latter.
		{"CVE-2024-27022", "6.1.90-1", vAffected, "6.1.192-1"},
		{"CVE-2024-27022", "6.1.192-1", vFixed, ""},
		// A version between uploads (a local rebuild) orders between them.
		{"CVE-2026-99228", "6.1.191-1", vAffected, "6.1.192-1"},
		{"CVE-2026-99228", "6.1.192-1+local1", vFixed, ""},
	}
	for _, tt := range tests {
		vi := int(db.byID[tt.cve])
		if db.Lookup(tt.cve) == nil {
			t.Fatalf("%s not in the database", tt.cve)
		}
		h := host
		up, _ := UpstreamOfDebian(tt.running)
		o, err := tr.ord(tt.running)
		if err != nil {
			t.Fatal(err)
		}
		got := db.verdict(&h, tr, vi, o, up)
		if got.status != tt.want || got.fixVersion != tt.fixedIn {
			t.Errorf("verdict(%s on %s) = %v fixed in %q (%s), want %v fixed in %q", tt.cve, tt.running, got.status, got.fixVersion, got.evidence, tt.want, tt.fixedIn)
		}
	}
	if got := tr.Newest(); got != "6.1.192-2" {
		t.Errorf("Newest() = %s, want 6.1.192-2", got)
	}
}

func buildFrom(t testing.TB, specs ...FeedSpec) (*DB, error) {
	t.Helper()
	return Load(t.Context(), specs, LoadOptions{})
}

func TestParseDebianChangelogErrors(t *testing.T) {
	const good = "linux (6.1.192-1) bookworm-security; urgency=high\n\n  * fix (CVE-2026-1234)\n\n -- A B <a@b.c>  Mon, 16 Nov 2026 11:17:40 +0100\n"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "no changelog entries"},
		{"bad version", strings.Replace(good, "6.1.192-1", "x6.1", 1), "in.txt:1: header"},
		{"no urgency", strings.Replace(good, "urgency=high", "foo=bar", 1), "in.txt:1: header: no urgency="},
		{"no trailer", strings.Split(good, " -- ")[0], "in.txt:1: trailer: entry linux (6.1.192-1) has no trailer"},
		{"bad date", strings.Replace(good, "Mon, 16 Nov 2026", "16/11/2026", 1), "in.txt:5: trailer.date"},
		{"text outside", "hello\n" + good, "in.txt:1: header"},
		{"two headers", strings.Replace(good, "\n -- ", "\nlinux (6.1.1-1) unstable; urgency=low\n -- ", 1), "in.txt:5: entry: header of a new entry before the trailer"},
		{"stray trailer", " -- A B <a@b.c>  Mon, 16 Nov 2026 11:17:40 +0100\n", "in.txt:1: trailer: trailer line outside an entry"},
	}
	for _, tt := range tests {
		_, err := ParseDebianChangelog("in.txt", strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseDebianChangelog = %v, want an error containing %q", tt.name, err, tt.want)
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v is not ErrMalformed", tt.name, err)
		}
	}
	cl, err := ParseDebianChangelog("in.txt", strings.NewReader(good+"\n# comment\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Upload{{Source: "linux", Version: "6.1.192-1", Distribution: "bookworm-security", Urgency: "high",
		Date: time.Date(2026, 11, 16, 10, 17, 40, 0, time.UTC), CVEs: []string{"CVE-2026-1234"}, Line: 1,
		Changes: []Change{{Text: "fix (CVE-2026-1234)", CVEs: []string{"CVE-2026-1234"}}}}}
	if diff := cmp.Diff(want, cl.Uploads); diff != "" {
		t.Errorf("ParseDebianChangelog mismatch (-want +got):\n%s", diff)
	}
}

func TestParseChanges(t *testing.T) {
	const body = `  [ Ben Hutchings ]
  * New upstream stable update:
    https://www.kernel.org/pub/linux/kernel/v6.x/ChangeLog-6.1.191
    - io-wq: order the exit bit against worker creation task work
    - apparmor: fix out-of-bounds write when null terminating a label vec
      (CVE-2026-89761)
  * nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362,
    CVE-2026-99363)
  * ext4: fix NULL folio dereference in mballoc (Closes: #1154101)
`
	group := "New upstream stable update:"
	want := []Change{
		{Text: "io-wq: order the exit bit against worker creation task work", Group: group},
		{Text: "apparmor: fix out-of-bounds write when null terminating a label vec (CVE-2026-89761)", Group: group, CVEs: []string{"CVE-2026-89761"}},
		{Text: "nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362, CVE-2026-99363)", CVEs: []string{"CVE-2026-99362", "CVE-2026-99363"}},
		{Text: "ext4: fix NULL folio dereference in mballoc (Closes: #1154101)"},
	}
	if diff := cmp.Diff(want, parseChanges(body)); diff != "" {
		t.Errorf("parseChanges mismatch (-want +got):\n%s", diff)
	}
}

func FuzzParseDebianChangelog(f *testing.F) {
	f.Add([]byte("linux (6.1.192-1) bookworm-security; urgency=high\n\n  * fix (CVE-2026-1234)\n\n -- A B <a@b.c>  Mon, 16 Nov 2026 11:17:40 +0100\n"))
	f.Add([]byte("linux-signed-amd64 (6.1.192+2) bookworm-security; urgency=high\n\n  * Sign kernel from linux 6.1.192-2\n\n -- A <a@b>  Mon, 16 Nov 2026 11:17:40 +0100\n"))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		cl, err := ParseDebianChangelog("fuzz", strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		for _, u := range cl.Uploads {
			if ValidateVersion(SchemeDeb, u.Version) != nil || u.Urgency == "" || u.Date.IsZero() {
				t.Fatalf("accepted an upload with a bad field: %+v", u)
			}
		}
	})
}
