package bundle

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// validManifest returns a manifest that passes Validate.
func validManifest() *Manifest {
	return &Manifest{
		FormatVersion: FormatVersion,
		Name:          "stent_6_1_0_56_l3",
		Kernel: Kernel{
			Release:        "6.1.0-56-amd64",
			BuildID:        "4c2b0a7f6d2e1c9b8a7f6e5d4c3b2a1908f7e6d5",
			PackageVersion: "6.1.192-2",
		},
		Level:        3,
		Replace:      true,
		CVEs:         []string{"CVE-2024-1086", "CVE-2023-12345"},
		Functions:    []Function{{Object: "vmlinux", Name: "nft_verdict_init"}, {Object: "nf_tables", Name: "nft_do_chain", Sympos: 2}},
		Description:  "Fix nf_tables verdict use-after-free.\n\tSee upstream.",
		Created:      time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC),
		Effective:    &Effective{PackageVersion: "6.1.192-3", VersionString: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2025-01-30)"},
		ModuleSHA256: strings.Repeat("ab", 32),
		ModuleSize:   4096,
		SourceSHA256: strings.Repeat("0f", 32),
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Manifest)
	}{
		{"full", func(*Manifest) {}},
		{"optional fields absent", func(m *Manifest) {
			m.Kernel.BuildID, m.Kernel.PackageVersion = "", ""
			m.CVEs, m.Effective, m.SourceSHA256 = nil, nil, ""
			m.Replace = false
		}},
		{"rhel release", func(m *Manifest) { m.Kernel.Release = "5.14.0-427.13.1.el9_4.x86_64" }},
		{"epoch version", func(m *Manifest) { m.Kernel.PackageVersion = "1:6.1.192-2~bpo11+1" }},
		{"compiler-renamed symbol", func(m *Manifest) { m.Functions[0].Name = "tcp_v4_rcv.cold.12" }},
		{"max name", func(m *Manifest) { m.Name = strings.Repeat("a", 55) }},
		{"md5 build id", func(m *Manifest) { m.Kernel.BuildID = strings.Repeat("0a", 16) }},
		{"effective without version string", func(m *Manifest) { m.Effective.VersionString = "" }},
		{"unicode description", func(m *Manifest) { m.Description = "Corrige la faille — « nft »" }},
	} {
		m := validManifest()
		tc.edit(m)
		if err := m.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Manifest)
		field string // the FieldError.Field expected
		is    error
	}{
		{"version 0", func(m *Manifest) { m.FormatVersion = 0 }, "format_version", ErrUnknownVersion},
		{"version 2", func(m *Manifest) { m.FormatVersion = 2 }, "format_version", ErrUnknownVersion},
		{"no name", func(m *Manifest) { m.Name = "" }, "name", ErrInvalidManifest},
		{"dash in name", func(m *Manifest) { m.Name = "stent-patch" }, "name", ErrInvalidManifest},
		{"long name", func(m *Manifest) { m.Name = strings.Repeat("a", 56) }, "name", ErrInvalidManifest},
		{"no release", func(m *Manifest) { m.Kernel.Release = "" }, "kernel.release", ErrInvalidManifest},
		{"release with space", func(m *Manifest) { m.Kernel.Release = "6.1.0 amd64" }, "kernel.release", ErrInvalidManifest},
		{"release with slash", func(m *Manifest) { m.Kernel.Release = "../../etc" }, "kernel.release", ErrInvalidManifest},
		{"long release", func(m *Manifest) { m.Kernel.Release = strings.Repeat("6", 65) }, "kernel.release", ErrInvalidManifest},
		{"uppercase build id", func(m *Manifest) { m.Kernel.BuildID = strings.Repeat("AB", 20) }, "kernel.build_id", ErrInvalidManifest},
		{"odd build id", func(m *Manifest) { m.Kernel.BuildID = strings.Repeat("a", 41) }, "kernel.build_id", ErrInvalidManifest},
		{"short build id", func(m *Manifest) { m.Kernel.BuildID = "abcd" }, "kernel.build_id", ErrInvalidManifest},
		{"bad package version", func(m *Manifest) { m.Kernel.PackageVersion = "6.1 2" }, "kernel.package_version", ErrInvalidManifest},
		{"level 0", func(m *Manifest) { m.Level = 0 }, "level", ErrInvalidManifest},
		{"negative level", func(m *Manifest) { m.Level = -1 }, "level", ErrInvalidManifest},
		{"huge level", func(m *Manifest) { m.Level = 1 << 40 }, "level", ErrInvalidManifest},
		{"lowercase cve", func(m *Manifest) { m.CVEs[1] = "cve-2024-1086" }, "cves[1]", ErrInvalidManifest},
		{"short cve number", func(m *Manifest) { m.CVEs[0] = "CVE-2024-108" }, "cves[0]", ErrInvalidManifest},
		{"cve year 1998", func(m *Manifest) { m.CVEs[0] = "CVE-1998-0001" }, "cves[0]", ErrInvalidManifest},
		{"cve with suffix", func(m *Manifest) { m.CVEs[0] = "CVE-2024-1086 " }, "cves[0]", ErrInvalidManifest},
		{"duplicate cve", func(m *Manifest) { m.CVEs[1] = m.CVEs[0] }, "cves[1]", ErrInvalidManifest},
		{"no functions", func(m *Manifest) { m.Functions = nil }, "functions", ErrInvalidManifest},
		{"no object", func(m *Manifest) { m.Functions[0].Object = "" }, "functions[0].object", ErrInvalidManifest},
		{"bad object", func(m *Manifest) { m.Functions[1].Object = "nf-tables" }, "functions[1].object", ErrInvalidManifest},
		{"no function name", func(m *Manifest) { m.Functions[1].Name = "" }, "functions[1].name", ErrInvalidManifest},
		{"function name with space", func(m *Manifest) { m.Functions[0].Name = "a b" }, "functions[0].name", ErrInvalidManifest},
		{"function name starts with digit", func(m *Manifest) { m.Functions[0].Name = "1abc" }, "functions[0].name", ErrInvalidManifest},
		{"negative sympos", func(m *Manifest) { m.Functions[0].Sympos = -1 }, "functions[0].sympos", ErrInvalidManifest},
		{"duplicate function", func(m *Manifest) { m.Functions[1] = m.Functions[0] }, "functions[1]", ErrInvalidManifest},
		{"no description", func(m *Manifest) { m.Description = "" }, "description", ErrInvalidManifest},
		{"escape in description", func(m *Manifest) { m.Description = "ok\x1b[2J" }, "description", ErrInvalidManifest},
		{"bidi override in description", func(m *Manifest) { m.Description = "ok\u202egnp.exe" }, "description", ErrInvalidManifest},
		{"long description", func(m *Manifest) { m.Description = strings.Repeat("x", 8193) }, "description", ErrInvalidManifest},
		{"no created", func(m *Manifest) { m.Created = time.Time{} }, "created", ErrInvalidManifest},
		{"created not UTC", func(m *Manifest) { m.Created = m.Created.In(time.FixedZone("CET", 3600)) }, "created", ErrInvalidManifest},
		{"created year 1999", func(m *Manifest) { m.Created = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) }, "created", ErrInvalidManifest},
		{"effective without version", func(m *Manifest) { m.Effective.PackageVersion = "" }, "effective.package_version", ErrInvalidManifest},
		{"effective version string newline", func(m *Manifest) { m.Effective.VersionString = "a\nb" }, "effective.version_string", ErrInvalidManifest},
		{"no module sha", func(m *Manifest) { m.ModuleSHA256 = "" }, "module_sha256", ErrInvalidManifest},
		{"uppercase module sha", func(m *Manifest) { m.ModuleSHA256 = strings.Repeat("AB", 32) }, "module_sha256", ErrInvalidManifest},
		{"short module sha", func(m *Manifest) { m.ModuleSHA256 = "abcd" }, "module_sha256", ErrInvalidManifest},
		{"zero module size", func(m *Manifest) { m.ModuleSize = 0 }, "module_size", ErrInvalidManifest},
		{"module size over limit", func(m *Manifest) { m.ModuleSize = MaxModuleSize + 1 }, "module_size", ErrInvalidManifest},
		{"bad source sha", func(m *Manifest) { m.SourceSHA256 = "xyz" }, "source_sha256", ErrInvalidManifest},
	} {
		m := validManifest()
		tc.edit(m)
		err := m.Validate()
		if !errors.Is(err, tc.is) {
			t.Errorf("%s: Validate() = %v, want %v", tc.name, err, tc.is)
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: Validate() = %v, want an error for field %s", tc.name, err, tc.field)
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() message %q does not name field %s", tc.name, err, tc.field)
		}
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	m := validManifest()
	m.Name, m.Level, m.Description = "", 0, ""
	err := m.Validate()
	for _, field := range []string{"name", "level", "description"} {
		if !strings.Contains(err.Error(), "manifest field "+field+":") {
			t.Errorf("Validate() = %v, want it to name %s", err, field)
		}
	}
}

func TestDecodeManifest(t *testing.T) {
	good, err := encodeManifest(validManifest())
	if err != nil {
		t.Fatal(err)
	}
	if m, err := DecodeManifest(good); err != nil {
		t.Fatalf("DecodeManifest(good) = %v", err)
	} else if err := m.Validate(); err != nil {
		t.Fatalf("DecodeManifest(good).Validate() = %v", err)
	}
	g := string(good)
	for _, tc := range []struct {
		name string
		in   string
		is   error
		msg  string // part of the message
	}{
		{"empty", "", ErrMalformed, "ends early"},
		{"null", "null", ErrMalformed, "not a JSON object"},
		{"array", "[]", ErrMalformed, "not a JSON object"},
		{"unknown field", `{"format_version":1,"colour":"red"}`, ErrInvalidManifest, "colour"},
		{"nested unknown field", `{"kernel":{"release":"x","arch":"amd64"}}`, ErrInvalidManifest, "arch"},
		{"duplicate key", `{"name":"a","name":"b"}`, ErrInvalidManifest, "name: appears twice"},
		{"nested duplicate key", `{"kernel":{"release":"a","release":"b"}}`, ErrInvalidManifest, "kernel.release: appears twice"},
		{"case-folded key", `{"Name":"a"}`, ErrInvalidManifest, `"Name"`},
		{"kelvin-sign key", "{\"\u212aernel\":{}}", ErrInvalidManifest, "lowercase"},
		{"trailing object", g + "{}", ErrMalformed, "after the JSON object"},
		{"trailing garbage", g + "x", ErrMalformed, ""},
		{"invalid UTF-8", strings.Replace(g, "Fix", "F\xffx", 1), ErrMalformed, "UTF-8"},
		{"string for level", `{"level":"3"}`, ErrInvalidManifest, "field level"},
		{"float for level", `{"level":3.5}`, ErrInvalidManifest, "field level"},
		{"string for functions", `{"functions":"x"}`, ErrInvalidManifest, "field functions"},
		{"bad time", `{"created":"yesterday"}`, ErrInvalidManifest, "yesterday"},
		{"deep nesting", `{"functions":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, ErrInvalidManifest, "nested deeper"},
		{"syntax error", `{"name":}`, ErrMalformed, "invalid character"},
		{"truncated", g[:len(g)/2], ErrMalformed, ""},
	} {
		_, err := DecodeManifest([]byte(tc.in))
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: DecodeManifest(%.40q) = %v, want %v containing %q", tc.name, tc.in, err, tc.is, tc.msg)
		}
	}
}
