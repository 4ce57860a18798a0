package hostcli

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/testenv"
)

// execStent runs the stent command line in-process.
func execStent(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// fakeKO returns a minimal ELF64 relocatable whose .modinfo section
// holds entries, NUL-separated as kbuild writes them. Built in Go so the
// tests need no compiler; TestModinfoNameGCC checks a compiled object too.
func fakeKO(typ elf.Type, entries ...string) []byte {
	modinfo := []byte(strings.Join(entries, "\x00") + "\x00")
	shstrtab := []byte("\x00.modinfo\x00.shstrtab\x00")
	modinfoOff := uint64(64)
	shstrOff := modinfoOff + uint64(len(modinfo))
	shOff := (shstrOff + uint64(len(shstrtab)) + 7) &^ 7
	var buf bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(typ), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: 64, Shentsize: 64, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS], hdr.Ident[elf.EI_DATA], hdr.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&buf, binary.LittleEndian, hdr)
	buf.Write(modinfo)
	buf.Write(shstrtab)
	buf.Write(make([]byte, shOff-uint64(buf.Len())))
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: modinfoOff, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: shstrOff, Size: uint64(len(shstrtab)), Addralign: 1},
	} {
		binary.Write(&buf, binary.LittleEndian, s)
	}
	return buf.Bytes()
}

func TestModinfoName(t *testing.T) {
	good := fakeKO(elf.ET_REL, "license=GPL", "livepatch=Y", "name=stent_l3", "vermagic=6.1.0-56-amd64 SMP mod_unload")
	for _, tc := range []struct {
		name    string
		ko      []byte
		want    string
		wantErr string
	}{
		{"module", good, "stent_l3", ""},
		{"no name", fakeKO(elf.ET_REL, "license=GPL"), "", "no name= entry"},
		{"two names", fakeKO(elf.ET_REL, "name=a", "name=b"), "", "more than one name="},
		{"empty name", fakeKO(elf.ET_REL, "name="), "", "empty name="},
		{"executable", fakeKO(elf.ET_EXEC, "name=a"), "", "want a relocatable"},
		{"no modinfo", bytes.Replace(good, []byte(".modinfo"), []byte(".modinfX"), 1), "", "no .modinfo section"},
		{"not ELF", []byte("#!/bin/sh\necho hi\n"), "", "not an ELF file"},
		{"empty", nil, "", "not an ELF file"},
	} {
		got, err := modinfoName(tc.ko)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: modinfoName() = %q, %v, want %q, %q", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	for n := 0; n < len(good); n++ { // every truncation fails cleanly
		if _, err := modinfoName(good[:n]); err == nil {
			t.Errorf("modinfoName(first %d of %d bytes) = nil error", n, len(good))
		}
	}
}

// TestModinfoNameGCC reads .modinfo from an object gcc compiles, laid out
// as kbuild's MODULE_INFO() lays it out.
func TestModinfoNameGCC(t *testing.T) {
	testenv.NeedTools(t, "gcc")
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "m.c")
	os.WriteFile(src, []byte(`
static const char modinfo_license[] __attribute__((section(".modinfo"), used, aligned(1))) = "license=GPL";
static const char modinfo_name[] __attribute__((section(".modinfo"), used, aligned(1))) = "name=stent_gcc";
int stent_dummy(void) { return 0; }
`), 0o644)
	obj := filepath.Join(dir, "m.ko")
	if out, err := exec.Command(gcc, "-c", "-o", obj, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	ko, _ := os.ReadFile(obj)
	if got, err := modinfoName(ko); got != "stent_gcc" || err != nil {
		t.Errorf("modinfoName(gcc object) = %q, %v, want stent_gcc", got, err)
	}
}

func FuzzModinfoName(f *testing.F) {
	f.Add(fakeKO(elf.ET_REL, "name=x"))
	f.Add(fakeKO(elf.ET_EXEC))
	f.Fuzz(func(t *testing.T, ko []byte) {
		name, err := modinfoName(ko)
		if err == nil && name == "" {
			t.Fatalf("modinfoName() = \"\", nil")
		}
	})
}

// bundleFixture is a signing key, a trusted keys folder holding its .pub, a
// module and a manifest file, all in a temp dir.
type bundleFixture struct {
	dir, key, keysDir, ko, manifest string
}

const bundleTestManifest = `{
  "name": "stent_l3",
  "kernel": {"release": "6.1.0-56-amd64", "package_version": "6.1.192-2"},
  "level": 3,
  "replace": true,
  "cves": ["CVE-2024-1086"],
  "functions": [{"object": "vmlinux", "name": "nft_verdict_init"}],
  "description": "Fix nf_tables verdict handling.",
  "effective": {"package_version": "6.1.192-3"}
}
`

func newBundleFixture(t *testing.T) bundleFixture {
	t.Helper()
	dir := t.TempDir()
	fx := bundleFixture{
		dir:      dir,
		key:      filepath.Join(dir, "signing", "ci.key"),
		keysDir:  filepath.Join(dir, "keys"),
		ko:       filepath.Join(dir, "stent_l3.ko"),
		manifest: filepath.Join(dir, "manifest.json"),
	}
	if code, _, stderr := execStent(t, "key", "generate", "--out", filepath.Join(dir, "signing"), "--name", "ci"); code != 0 {
		t.Fatalf("stent key generate: exit %d: %s", code, stderr)
	}
	os.Mkdir(fx.keysDir, 0o755)
	pub, _ := os.ReadFile(filepath.Join(dir, "signing", "ci.pub"))
	os.WriteFile(filepath.Join(fx.keysDir, "ci.pub"), pub, 0o644)
	os.WriteFile(fx.ko, fakeKO(elf.ET_REL, "license=GPL", "name=stent_l3"), 0o644)
	os.WriteFile(fx.manifest, []byte(bundleTestManifest), 0o644)
	return fx
}

func (fx bundleFixture) create(t *testing.T, out string) {
	t.Helper()
	code, stdout, stderr := execStent(t, "bundle", "create", "--key", fx.key, "--ko", fx.ko, "--manifest", fx.manifest, "-o", out)
	if code != 0 {
		t.Fatalf("stent bundle create: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("stent bundle create printed %q, want it to name %s", stdout, out)
	}
}

func TestBundleCreateVerifyInspect(t *testing.T) {
	fx := newBundleFixture(t)
	out := filepath.Join(fx.dir, "stent_l3.stb")
	fx.create(t, out)

	code, stdout, stderr := execStent(t, "--keys-dir", fx.keysDir, "bundle", "verify", out)
	if code != 0 || !strings.Contains(stdout, "verified: stent_l3 level 3 for 6.1.0-56-amd64") {
		t.Errorf("stent bundle verify = exit %d, %q, %q, want exit 0 and verified", code, stdout, stderr)
	}

	code, stdout, _ = execStent(t, "--keys-dir", fx.keysDir, "bundle", "inspect", out)
	for _, want := range []string{"name:", "stent_l3", "6.1.0-56-amd64, package 6.1.192-2", "3, cumulative", "CVE-2024-1086", "vmlinux:nft_verdict_init", "effective:", "6.1.192-3", "verified:", "yes", filepath.Join(fx.keysDir, "ci.pub")} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("stent bundle inspect = exit %d, %q, want %q in it", code, stdout, want)
		}
	}

	code, stdout, _ = execStent(t, "--keys-dir", fx.keysDir, "bundle", "inspect", "--json", out)
	var rep struct {
		Verified bool   `json:"verified"`
		KeyID    string `json:"key_id"`
		Manifest struct {
			Name         string `json:"name"`
			ModuleSHA256 string `json:"module_sha256"`
			ModuleSize   int64  `json:"module_size"`
			Created      string `json:"created"`
			Format       int    `json:"format_version"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 {
		t.Fatalf("stent bundle inspect --json = exit %d, %q: %v", code, stdout, err)
	}
	ko, _ := os.ReadFile(fx.ko)
	if !rep.Verified || rep.Manifest.Name != "stent_l3" || rep.Manifest.ModuleSize != int64(len(ko)) ||
		len(rep.Manifest.ModuleSHA256) != 64 || !strings.HasSuffix(rep.Manifest.Created, "Z") || rep.Manifest.Format != 1 || len(rep.KeyID) != 16 {
		t.Errorf("stent bundle inspect --json = %+v, want verified with the filled fields", rep)
	}

	// The library agrees with the CLI.
	kr, err := bundle.LoadKeyring(fx.keysDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Open(out, kr); err != nil {
		t.Errorf("bundle.Open(%s) = %v", out, err)
	}
}

func TestBundleCreateRefuses(t *testing.T) {
	fx := newBundleFixture(t)
	write := func(name, data string) string {
		p := filepath.Join(fx.dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	otherKO := filepath.Join(fx.dir, "other.ko")
	os.WriteFile(otherKO, fakeKO(elf.ET_REL, "name=other"), 0o644)
	out := filepath.Join(fx.dir, "out.stb")
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"name mismatch", []string{"--ko", otherKO}, `named "other" in its .modinfo`},
		{"not ELF", []string{"--ko", fx.manifest}, "not an ELF file"},
		{"unknown manifest field", []string{"--manifest", write("m1.json", `{"nmae":"x"}`)}, `"nmae": unknown field`},
		{"bad CVE", []string{"--manifest", write("m2.json", strings.Replace(bundleTestManifest, "CVE-2024-1086", "CVE-24-1", 1))}, "manifest field cves[0]"},
		{"wrong module hash", []string{"--manifest", write("m3.json", strings.Replace(bundleTestManifest, `"level"`, `"module_sha256": "`+strings.Repeat("0", 64)+`", "level"`, 1))}, "module digest mismatch"},
		{"public key as signing key", []string{"--key", filepath.Join(fx.keysDir, "ci.pub")}, `want "PRIVATE KEY"`},
		{"missing ko", []string{"--ko", filepath.Join(fx.dir, "nope.ko")}, "no such file"},
	} {
		args := map[string]string{"--key": fx.key, "--ko": fx.ko, "--manifest": fx.manifest, "-o": out}
		for i := 0; i < len(tc.args); i += 2 {
			args[tc.args[i]] = tc.args[i+1]
		}
		argv := []string{"bundle", "create"}
		for k, v := range args {
			argv = append(argv, k, v)
		}
		code, _, stderr := execStent(t, argv...)
		if code == 0 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%s: stent bundle create = exit %d, %q, want an error saying %q", tc.name, code, stderr, tc.msg)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s: stent bundle create left %s behind", tc.name, out)
		}
	}
	if code, _, stderr := execStent(t, "bundle", "create", "--key", fx.key); code == 0 || !strings.Contains(stderr, "required flag") {
		t.Errorf("stent bundle create without flags = exit %d, %q", code, stderr)
	}
}

func TestBundleVerifyRefuses(t *testing.T) {
	fx := newBundleFixture(t)
	good := filepath.Join(fx.dir, "good.stb")
	fx.create(t, good)
	data, _ := os.ReadFile(good)
	file := func(name string, b []byte) string {
		p := filepath.Join(fx.dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	tampered := bytes.Clone(data)
	i := bytes.Index(tampered, []byte("verdict handling"))
	tampered[i] = 'V'
	emptyKeys := filepath.Join(fx.dir, "nokeys")
	os.Mkdir(emptyKeys, 0o755)
	badKeys := filepath.Join(fx.dir, "badkeys")
	os.Mkdir(badKeys, 0o755)
	os.WriteFile(filepath.Join(badKeys, "broken.pub"), []byte("not a key"), 0o644)
	// The good key, in a folder everyone may write to.
	openKeys := filepath.Join(fx.dir, "openkeys")
	os.Mkdir(openKeys, 0o755)
	ents, _ := os.ReadDir(fx.keysDir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(fx.keysDir, e.Name()))
		os.WriteFile(filepath.Join(openKeys, e.Name()), b, 0o644)
	}
	os.Chmod(openKeys, 0o777)

	for _, tc := range []struct {
		name, file, keys string
		code             int
		reason           string
	}{
		{"tampered manifest", file("t.stb", tampered), fx.keysDir, 1, "bad_signature"},
		{"tampered module", file("m.stb", append(bytes.Clone(data[:len(data)-1]), data[len(data)-1]^1)), fx.keysDir, 1, "digest_mismatch"},
		{"truncated", file("tr.stb", data[:len(data)-10]), fx.keysDir, 1, "malformed"},
		{"trailing garbage", file("tg.stb", append(bytes.Clone(data), '\n')), fx.keysDir, 1, "malformed"},
		{"garbage", file("g.stb", []byte("hello")), fx.keysDir, 1, "malformed"},
		{"untrusted key", good, emptyKeys, 1, "unknown_key"},
		{"missing file", filepath.Join(fx.dir, "missing.stb"), fx.keysDir, 2, "unreadable"},
		{"missing keys folder", good, filepath.Join(fx.dir, "nowhere"), 2, "unreadable"},
		{"broken key file", good, badKeys, 2, "bad_key_file"},
		{"world-writable keys folder", good, openKeys, 2, "unsafe_keys"},
	} {
		code, _, stderr := execStent(t, "--keys-dir", tc.keys, "bundle", "verify", tc.file)
		if code != tc.code || !strings.Contains(stderr, tc.file) {
			t.Errorf("%s: stent bundle verify = exit %d, %q, want exit %d naming %s", tc.name, code, stderr, tc.code, tc.file)
		}
		code, stdout, _ := execStent(t, "--keys-dir", tc.keys, "bundle", "verify", "--json", tc.file)
		var rep bundleReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != tc.code || rep.Verified || rep.Reason != tc.reason || rep.Error == "" {
			t.Errorf("%s: stent bundle verify --json = exit %d, %q, want exit %d and reason %s", tc.name, code, stdout, tc.code, tc.reason)
		}
	}

	// inspect still shows an untrusted bundle, and says it does not verify.
	code, stdout, _ := execStent(t, "--keys-dir", emptyKeys, "bundle", "inspect", good)
	if code != 0 || !strings.Contains(stdout, "no: unknown signing key") {
		t.Errorf("stent bundle inspect (untrusted) = exit %d, %q, want exit 0 and verified: no", code, stdout)
	}
	if code, _, stderr := execStent(t, "--keys-dir", fx.keysDir, "bundle", "inspect", file("g2.stb", []byte("junk"))); code != 1 || !strings.Contains(stderr, "bad magic") {
		t.Errorf("stent bundle inspect (garbage) = exit %d, %q, want exit 1 and bad magic", code, stderr)
	}
}
