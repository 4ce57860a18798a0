package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// badInputs builds the inputs of the bad-input audit (docs/policy.md,
// issue 4 part 7) under dir: per case an inventory and feeds.
type badInput struct {
	name  string
	inv   string
	feeds []string
	// want is the error plan and report must fail with; "" means the
	// input is judgeable only as unknown: the plan must succeed with
	// CVEs in state unknown, and no rule and no report row compliant.
	want string
}

// skippedRecords are the bad-input cases of cna records Stent leaves out
// and names (their CVE then judged by the other feeds, or unknown) or
// reads in part: warn is what the plan's feeds[].warnings and stderr must
// say. judged: the changelog names the CVE, so the host is judged as
// usual (vuln.TestCNAUnreadableRecordKeepsCVE checks that the CVE stays,
// unknown where no other feed speaks for it).
var skippedRecords = map[string]struct {
	warn   string
	judged bool
}{
	"unparsable cna version": {`CVE-2024-26586.json: containers.cna.affected[1].versions[4].version: kernel version "six"`, true},
	"unparsable cna dyad":    {`CVE-2024-26586.dyad:5: fixed_version: kernel version "six"`, true},
	"cna without id":         {"CVE-2024-26586.json: cveMetadata.cveId: missing required field", true},
	"cna without affected":   {"CVE-2024-26586.json: containers.cna.affected: missing required field", true},
}

func badInputs(t *testing.T) []badInput {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// edit replaces each old with its new, once; every old must be there.
	edit := func(s string, pairs ...string) string {
		t.Helper()
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("fixture lacks %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	web2b, err := os.ReadFile(filepath.Join(policyData, "fleet", "web2.json"))
	if err != nil {
		t.Fatal(err)
	}
	web2 := string(web2b)
	good := filepath.Join(policyData, "fleet", "web2.json")
	inv := func(name string, pairs ...string) string { return write(name, edit(web2, pairs...)) }
	changelog := "debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz")
	cna := "cna=" + filepath.Join(vulnData, "cna")
	osvRec := `{"id":"DEBIAN-CVE-2026-99228","modified":"2026-11-17T08:00:00Z","published":"2026-11-10T00:00:00Z","upstream":["CVE-2026-99228"],"affected":[{"package":{"ecosystem":"Debian:12","name":"linux"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"6.1.192-1"}]}]}]}`
	osv := func(name string, pairs ...string) string { return "osv=" + write(name, edit(osvRec, pairs...)) }
	// cnaWith copies the CNA fixture folder, editing CVE-2024-26586.
	cnaWith := func(name, file string, pairs ...string) string {
		src := filepath.Join(vulnData, "cna", "cve", "published", "2024")
		ents, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			if e.Name() == file {
				s = edit(s, pairs...)
			}
			write(filepath.Join(name, "cve", "published", "2024", e.Name()), s)
		}
		return "cna=" + filepath.Join(dir, name)
	}
	return []badInput{
		// Unknown distributions.
		{"unknown distro", inv("plan9.json", `"id": "debian"`, `"id": "plan9"`), []string{changelog}, `os.id "plan9": unknown distribution (supported: almalinux`},
		{"derivative", inv("mint.json", `"id": "debian"`, `"id": "linuxmint", "id_like": ["ubuntu", "debian"]`), []string{changelog, cna}, `os.id "linuxmint": unknown distribution`},
		{"id in capitals", inv("caps.json", `"id": "debian"`, `"id": "Debian"`), []string{changelog}, `os.id "Debian": unknown distribution`},
		{"no os id", inv("noid.json", `"id": "debian",`, ``), []string{changelog}, "os.id: missing required field"},
		{"family mismatch", inv("fam.json", `"family": "deb"`, `"family": "rpm"`), []string{changelog}, `os.family "rpm" does not match distribution "debian"`},
		{"unknown family", inv("fam2.json", `"family": "deb"`, `"family": "apk"`), []string{changelog}, `os.family: want deb or rpm, got "apk"`},
		// A known distribution that no feed speaks for: unknown, never clean.
		{"debian release without a feed", inv("d13.json", `"version_id": "12"`, `"version_id": "13"`, `"codename": "bookworm"`, `"codename": "trixie"`, `"upstream": "6.1.190",`, ``), []string{changelog}, ""},
		// Without VERSION_ID and a codename, nothing tells the release (a
		// codename alone does: see TestPlanDebianCodenames).
		{"debian without version_id or codename", inv("dnv.json", `"version_id": "12",`, ``, `"codename": "bookworm",`, ``), []string{changelog}, ""},
		{"debian release without a changelog, with the CNA data", inv("d13c.json", `"version_id": "12"`, `"version_id": "13"`, `"codename": "bookworm"`, `"codename": "trixie"`), []string{changelog, cna}, ""},
		{"debian testing/sid without a changelog, with the CNA data", inv("dsid.json", `"version_id": "12",`, ``, `"codename": "bookworm"`, `"codename": "trixie"`, `"Debian GNU/Linux 12 (bookworm)"`, `"Debian GNU/Linux trixie/sid"`), []string{changelog, cna}, ""},
		{"fedora without its advisories", inv("fed2.json", `"id": "debian"`, `"id": "fedora"`, `"version_id": "12"`, `"version_id": "41"`, `"family": "deb"`, `"family": "rpm"`,
			`"release": "6.1.0-54-amd64"`, `"release": "6.1.190-100.fc41.x86_64"`, `"package_version": "6.1.190-1"`, `"package_version": "6.1.190-100.fc41"`, `"upstream": "6.1.190",`, ``,
			`"newest_kernel": "6.1.0-54-amd64"`, `"newest_kernel": ""`), []string{changelog, cna}, ""},
		{"rhel without its advisories", inv("rhel.json", `"id": "debian"`, `"id": "rhel"`, `"version_id": "12"`, `"version_id": "9.4"`, `"family": "deb"`, `"family": "rpm"`,
			`"release": "6.1.0-54-amd64"`, `"release": "5.14.0-427.13.1.el9_4.x86_64"`, `"package_version": "6.1.190-1"`, `"package_version": "5.14.0-427.13.1.el9_4"`, `"upstream": "6.1.190",`, ``,
			`"newest_kernel": "6.1.0-54-amd64"`, `"newest_kernel": ""`), []string{changelog, cna}, ""},
		// Unparsable versions.
		{"unparsable package version", inv("v.json", `"package_version": "6.1.190-1"`, `"package_version": "six"`), []string{changelog}, `debian version "six"`},
		{"no upstream in the version", inv("ev.json", `"upstream": "6.1.190",`, ``, `"package_version": "6.1.190-1"`, `"package_version": "1:abc-1"`), []string{changelog, cna}, `debian version "1:abc-1": upstream_version must start with digit`},
		{"unparsable upstream", inv("ug.json", `"upstream": "6.1.190"`, `"upstream": "garbage"`), []string{changelog, cna}, `kernel version "garbage"`},
		{"unparsable installed kernel", inv("np.json", `"version": "6.1.176-1"`, `"version": "!!"`, `"newest_kernel": "6.1.0-54-amd64"`, `"newest_kernel": "6.1.0-50-amd64"`), []string{changelog}, `kernel package linux-image-6.1.0-50-amd64: package version: debian version "!!"`},
		{"unparsable rpm version", inv("rg.json", `"id": "debian"`, `"id": "almalinux"`, `"family": "deb"`, `"family": "rpm"`, `"package_version": "6.1.190-1"`, `"package_version": "((("`), []string{changelog}, `rpm version "((("`},
		{"fedora release without a version", inv("fed.json", `"id": "debian"`, `"id": "fedora"`, `"family": "deb"`, `"family": "rpm"`, `"release": "6.1.0-54-amd64"`, `"release": "weird"`, `"package_version": "6.1.190-1"`, `"package_version": "6.5.6-300.fc39"`, `"upstream": "6.1.190",`, ``), []string{changelog, cna}, `upstream of kernel release "weird"`},
		{"unparsable changelog version", good, []string{"debian-changelog=" + write("changelog", "linux (!!garbage) bookworm; urgency=high\n\n  * Fix CVE-2026-1.\n\n -- A B <a@b>  Mon, 16 Nov 2026 00:00:00 +0000\n")}, `changelog:1: header: debian version "!!garbage"`},
		{"unparsable osv version", good, []string{changelog, osv("o4.json", `"6.1.192-1"`, `"!!garbage"`)}, `o4.json: affected[0].ranges[0].events[1].fixed: debian version "!!garbage"`},
		// A cna record Stent cannot read is left out and named, its CVE
		// unknown; a .dyad it cannot read leaves the JSON record's ranges
		// (docs/policy.md, "Odd records in a third-party feed").
		{"unparsable cna version", good, []string{changelog, cnaWith("c3", "CVE-2024-26586.json", `"version": "6.1.79"`, `"version": "six"`)}, ""},
		{"unparsable cna dyad", good, []string{changelog, cnaWith("c4", "CVE-2024-26586.dyad", "6.1.79", "six")}, ""},
		// Feeds with missing fields.
		{"nvd without id", good, []string{changelog, "nvd=" + write("nvd.json", `{"format":"NVD_CVE","vulnerabilities":[{"cve":{}}]}`)}, "nvd.json: vulnerabilities[0].cve.id: missing required field"},
		{"nvd bad vector", good, []string{changelog, "nvd=" + write("nvd2.json", `{"format":"NVD_CVE","vulnerabilities":[{"cve":{"id":"CVE-2026-99228","published":"2026-11-10T00:00:00.000","metrics":{"cvssMetricV31":[{"source":"nvd@nist.gov","type":"Primary","cvssData":{"version":"3.1","vectorString":"CVSS:3.1/garbage","baseScore":9.8}}]}}}]}`)}, `nvd2.json: vulnerabilities[0].cve.metrics.cvssMetricV31[0].cvssData.vectorString: cvss vector "CVSS:3.1/garbage"`},
		{"osv without id", good, []string{changelog, osv("o1.json", `"id":"DEBIAN-CVE-2026-99228",`, ``)}, "o1.json: id: missing required field"},
		{"osv without events", good, []string{changelog, osv("o6.json", `[{"introduced":"0"},{"fixed":"6.1.192-1"}]`, `[]`)}, "o6.json: affected[0].ranges[0].events: missing required field"},
		{"osv fixed without introduced", good, []string{changelog, osv("o3.json", `{"introduced":"0"},`, ``)}, "o3.json: affected[0].ranges[0].events[0].fixed: fixed without an introduced event before it"},
		{"osv empty fixed", good, []string{changelog, osv("o8.json", `"6.1.192-1"`, `""`)}, "o8.json: affected[0].ranges[0].events[1].fixed: missing required field"},
		{"cna without id", good, []string{changelog, cnaWith("c1", "CVE-2024-26586.json", `"cveId": "CVE-2024-26586",`, ``)}, ""},
		{"cna without affected", good, []string{changelog, cnaWith("c2", "CVE-2024-26586.json", `"affected": [`, `"xaffected": [`)}, ""},
		{"changelog without trailer", good, []string{"debian-changelog=" + write("changelog2", "linux (6.1-1) bookworm; urgency=high\n  * x\n")}, "changelog2:1: trailer"},
		{"livepatch without cves", good, []string{changelog, "livepatch=" + write("lp/x.json", `{"name":"x","kernel":{"release":"6.1.0-54-amd64"}}`)}, "x.json: cves: missing required field"},
		{"livepatch without kernel", good, []string{changelog, "livepatch=" + write("lp2/x.json", `{"name":"x","cves":["CVE-2026-99228"]}`)}, "x.json: kernel.release: missing required field"},
		// Inventories whose live patches claim fixes without evidence.
		{"live patch CVEs without a manifest", inv("lp.json", `"live_patches": []`, `"live_patches": [{"name":"x","enabled":true,"manifest":false,"cves":["CVE-2026-99228"]}]`), []string{changelog}, `live_patches[0] (x): cves without a manifest`},
		{"live patch for another kernel", inv("lp2.json", `"live_patches": []`, `"live_patches": [{"name":"x","enabled":true,"manifest":true,"kernel_release":"6.1.0-50-amd64","cves":["CVE-2026-99228"]}]`), []string{changelog}, `live_patches[0] (x): kernel_release 6.1.0-50-amd64, but the running kernel is 6.1.0-54-amd64`},
	}
}

// Bad input through plan and report: an error naming the input, or CVEs
// explicitly unknown; never a plan or report that says compliant.
func TestBadInputNeverCompliant(t *testing.T) {
	for _, tt := range badInputs(t) {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--inventory", tt.inv, "--now", "2026-11-23T00:00:00Z"}
			for _, f := range tt.feeds {
				args = append(args, "--feed", f)
			}
			code, stdout, stderr := execStent(t, append([]string{"plan", "--json"}, args...)...)
			rcode, rstdout, rstderr := execStent(t, append([]string{"report", "--format", "json"}, args...)...)
			if tt.want != "" {
				if code == 0 || stdout != "" || !strings.Contains(stderr, tt.want) {
					t.Errorf("stent plan = exit %d, %d bytes out, stderr %q; want a failure containing %q and no plan", code, len(stdout), stderr, tt.want)
				}
				if rcode == 0 || rstdout != "" || !strings.Contains(rstderr, tt.want) {
					t.Errorf("stent report = exit %d, %d bytes out, stderr %q; want a failure containing %q and no report", rcode, len(rstdout), rstderr, tt.want)
				}
				return
			}
			if code != 0 || rcode != 0 {
				t.Fatalf("stent plan = exit %d (%s), stent report = exit %d (%s); want both to judge the CVEs unknown", code, stderr, rcode, rstderr)
			}
			var fp policy.FleetPlan
			if err := json.Unmarshal([]byte(stdout), &fp); err != nil || len(fp.Hosts) != 1 {
				t.Fatalf("plan: %v, %d hosts", err, len(fp.Hosts))
			}
			if sk, ok := skippedRecords[tt.name]; ok {
				var warned bool
				for _, fi := range fp.Feeds {
					for _, w := range fi.Warnings {
						warned = warned || strings.Contains(w, sk.warn)
					}
				}
				if !warned || !strings.Contains(stderr, sk.warn) || !strings.Contains(rstderr, sk.warn) {
					t.Errorf("plan feeds %+v, stderr %q, report stderr %q; want each to say %q", fp.Feeds, stderr, rstderr, sk.warn)
				}
				if sk.judged {
					return
				}
			}
			h := fp.Hosts[0]
			if h.Counts[vuln.Unknown] == 0 {
				t.Errorf("plan counts %v, want CVEs in state unknown", h.Counts)
			}
			// "No released package fixes it" needs a feed that lists the
			// host's packages; a fix upstream alone is no such word.
			for _, f := range h.Exposure {
				if f.State == vuln.NoFix && (strings.Contains(f.Evidence, "no feed maps") || strings.Contains(f.Evidence, "add the") || strings.Contains(f.Evidence, "add an")) {
					t.Errorf("plan: %s is no-fix on %q", f.CVE, f.Evidence)
				}
			}
			for _, rr := range h.Compliance {
				if rr.Status == policy.Compliant {
					t.Errorf("plan: rule %s is compliant for a host no feed speaks for", rr.Rule)
				}
			}
			var rep policy.Report
			if err := json.Unmarshal([]byte(rstdout), &rep); err != nil || len(rep.Hosts) != 1 {
				t.Fatalf("report: %v", err)
			}
			if rep.Hosts[0].Status == policy.Compliant {
				t.Errorf("report: host %s is compliant", rep.Hosts[0].Hostname)
			}
		})
	}
}
