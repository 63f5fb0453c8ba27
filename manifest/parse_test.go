package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

const validTOML = `name = "good-module"
version = "1.0.0"
entry_point = "bin/good"
capabilities = ["read_blockchain"]

[dependencies]
"blvm-node" = ">=0.1.0"

[binary]
hash = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
size = 3
`

// top inserts top-level lines into validTOML before its first table; the
// first inserted line is line 5.
func top(lines string) string {
	i := strings.Index(validTOML, "\n[")
	return validTOML[:i] + "\n" + lines + validTOML[i:]
}

// TestSeedManifest pins the seed's example: every field decodes, and the
// only problems are the placeholder verification fields.
func TestSeedManifest(t *testing.T) {
	m, err := Parse("testdata/lightning-network.toml")
	if m == nil {
		t.Fatalf("seed manifest did not decode: %v", err)
	}
	want := &Manifest{
		Name:                 "lightning-network",
		Version:              "1.2.3",
		EntryPoint:           "lightning-network",
		Description:          "Lightning Network payment processor implementation",
		Author:               "Alice <alice@example.com>",
		Capabilities:         []string{"read_blockchain", "subscribe_events", "read_lightning"},
		Dependencies:         map[string]string{"blvm-node": ">=1.0.0"},
		OptionalDependencies: map[string]string{"blvm-mesh": ">=0.5.0"},
		ConfigSchema: map[string]string{
			"network":  "Network: mainnet, testnet, regtest (default: mainnet)",
			"fee_rate": "Default fee rate in sat/vB (default: 1)",
		},
		Binary: &Binary{Hash: "sha256:abc123...", Size: 1234567},
		Signatures: &Signatures{Threshold: "2-of-3", Maintainers: []Maintainer{
			{Name: "alice", PublicKey: "02abc...", Signature: "..."},
			{Name: "bob", PublicKey: "03def...", Signature: "..."},
		}},
		Payment: &Payment{
			Required: true, PriceSats: 100000,
			AuthorPaymentCode: "PM8TJ...", CommonsPaymentCode: "PM8TJ...", PaymentSignature: "...",
		},
		Path: "testdata/lightning-network.toml",
	}
	lines := m.Lines
	m.Lines = nil
	if !reflect.DeepEqual(m, want) {
		t.Errorf("seed manifest decoded as\n%+v\nwant\n%+v", m, want)
	}
	for key, line := range map[string]int{
		"name": 8, "capabilities[2]": 25, "dependencies.blvm-node": 33,
		"optional_dependencies.blvm-mesh": 37, "config_schema.fee_rate": 45,
		"binary.hash": 53, "signatures.threshold": 58,
		"signatures.maintainers[1].public_key": 61, "payment.payment_signature": 70,
	} {
		if lines[key] != line {
			t.Errorf("Lines[%q] = %d, want %d", key, lines[key], line)
		}
	}

	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems for the placeholders, got %v", err)
	}
	wantFields := []string{
		"binary.hash",
		"signatures.maintainers[0].public_key", "signatures.maintainers[0].signature",
		"signatures.maintainers[1].public_key", "signatures.maintainers[1].signature",
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Field)
		if p.File != "lightning-network.toml" || p.Line == 0 {
			t.Errorf("problem not located: %v", p)
		}
	}
	if !reflect.DeepEqual(got, wantFields) {
		t.Errorf("problems on %v, want %v\n%v", got, wantFields, ps)
	}
	if _, err := SigningView(m); err != nil {
		t.Errorf("SigningView(seed): %v", err)
	}
}

func TestParseValid(t *testing.T) {
	m, err := ParseBytes("modules/good/module.toml", []byte(validTOML))
	if err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	if m.Name != "good-module" || m.Binary.Size != 3 || m.Path != "modules/good/module.toml" {
		t.Errorf("decoded %+v", m)
	}
	if ps := m.Validate(); len(ps) != 0 {
		t.Errorf("Validate after Parse: %v", ps)
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, FileName)
	if err := os.WriteFile(p, []byte(top("capabilitis = []")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Parse(p)
	want := `module.toml:6: capabilitis: unknown key (did you mean "capabilities"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	if _, err := Parse(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "read manifest") {
		t.Errorf("missing file: %v", err)
	}
}

// Parse reads through safefile: a module.toml that is not a small regular
// file is refused with its path and why (the full table is in
// internal/safefile; this proves Parse uses it).
func TestParseRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.toml")
	os.WriteFile(real, []byte(validTOML), 0o644)
	link := filepath.Join(dir, "link", FileName)
	os.Mkdir(filepath.Dir(link), 0o755)
	os.Symlink(real, link)
	fifo := filepath.Join(dir, "fifo", FileName)
	os.Mkdir(filepath.Dir(fifo), 0o755)
	syscall.Mkfifo(fifo, 0o644)
	big := filepath.Join(dir, "big", FileName)
	os.Mkdir(filepath.Dir(big), 0o755)
	os.WriteFile(big, append([]byte(validTOML), make([]byte, 1<<20)...), 0o644)
	for path, reason := range map[string]string{link: "symlink", fifo: "is a FIFO, not a regular file", big: "over the limit of 1048576 bytes"} {
		if _, err := Parse(path); err == nil || !strings.Contains(err.Error(), path+": ") || !strings.Contains(err.Error(), reason) {
			t.Errorf("Parse(%s) = %v, want %q", path, err, reason)
		}
	}
}

// TestParseProblems checks the exact message for each rule, replacing or
// appending lines of validTOML.
func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // exact problem strings, in order
	}{
		{"syntax error", "name = \"x\"\nversion = \n", []string{"module.toml:2: invalid TOML: expected value but found '\\n' instead"}},
		{"unknown top-level key", top("nmae = \"x\""), []string{`module.toml:6: nmae: unknown key (did you mean "name"?)`}},
		{"unknown key far from all", top("zzzzzz = 1"), []string{`module.toml:6: zzzzzz: unknown key`}},
		{"unknown table key", strings.Replace(validTOML, "size = 3", "size = 3\nhsah = \"x\"", 1), []string{`module.toml:12: binary.hsah: unknown key (did you mean "hash"?)`}},
		{"unknown table", validTOML + "[bianry]\nx = 1\n", []string{`module.toml:12: bianry: unknown key (did you mean "binary"?)`}},
		{"unknown key in maintainer", validTOML + "[signatures]\nthreshold = \"1-of-1\"\nmaintainers = [\n  { name = \"a\", public_key = \"0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\", signature = \"" + strings.Repeat("00", 64) + "\", signatur = \"x\" },\n]\n",
			[]string{`module.toml:15: signatures.maintainers.signatur: unknown key (did you mean "signature"?)`}},
		{"wrong type", strings.Replace(validTOML, "size = 3", `size = "3"`, 1), []string{`module.toml:11: binary.size: wrong type: want an integer, not a string`}},
		{"table expected", top("payment = 5"), []string{`module.toml:6: payment: wrong type: want a table, not an integer`}},
		{"wrong type keeps other problems", strings.Replace(top("nmae = 1"), `version = "1.0.0"`, "version = 1", 1),
			[]string{`module.toml:2: version: wrong type: want a string, not an integer`, `module.toml:6: nmae: unknown key (did you mean "name"?)`}},
		{"config_schema value not a string", validTOML + "[config_schema]\nnetwork = 1\n", []string{`module.toml:13: config_schema.network: wrong type: want a string, not an integer`}},
		{"missing required", "description = \"x\"\n", []string{"module.toml: entry_point: required", "module.toml: name: required", "module.toml: version: required"}},
		{"bad name", strings.Replace(validTOML, "good-module", "Good_Module", 1), []string{`module.toml:1: name: "Good_Module" is not a valid module name (lowercase letters, digits and '-', at most 63)`}},
		{"name leading dash", strings.Replace(validTOML, "good-module", "-good", 1), []string{`module.toml:1: name: "-good" is not a valid module name (lowercase letters, digits and '-', at most 63)`}},
		{"name too long", strings.Replace(validTOML, "good-module", strings.Repeat("a", 64), 1), []string{`module.toml:1: name: "` + strings.Repeat("a", 64) + `" is not a valid module name (lowercase letters, digits and '-', at most 63)`}},
		{"loose version", strings.Replace(validTOML, `"1.0.0"`, `"1.0"`, 1), []string{`module.toml:2: version: not a strict semantic version: version "1.0": invalid semantic version`}},
		{"v prefix", strings.Replace(validTOML, `"1.0.0"`, `"v1.0.0"`, 1), []string{`module.toml:2: version: not a strict semantic version: version "v1.0.0": invalid characters in version`}},
		{"absolute entry", strings.Replace(validTOML, `"bin/good"`, `"/bin/sh"`, 1), []string{`module.toml:3: entry_point: "/bin/sh" must be relative to the module directory`}},
		{"dotdot entry", strings.Replace(validTOML, `"bin/good"`, `"../x"`, 1), []string{`module.toml:3: entry_point: "../x" must stay inside the module directory`}},
		{"inner dotdot entry", strings.Replace(validTOML, `"bin/good"`, `"bin/../../x"`, 1), []string{`module.toml:3: entry_point: "bin/../../x" must stay inside the module directory`}},
		{"trailing slash", strings.Replace(validTOML, `"bin/good"`, `"bin/"`, 1), []string{`module.toml:3: entry_point: "bin/" must name a file, not a directory`}},
		{"unclean entry", strings.Replace(validTOML, `"bin/good"`, `"./bin//good"`, 1), []string{`module.toml:3: entry_point: "./bin//good" is not a clean path (want "bin/good")`}},
		{"dot entry", strings.Replace(validTOML, `"bin/good"`, `"."`, 1), []string{`module.toml:3: entry_point: "." is not a clean path (want ".")`}},
		{"empty entry", strings.Replace(validTOML, `"bin/good"`, `""`, 1), []string{`module.toml:3: entry_point: required`}},
		{"bad capability", strings.Replace(validTOML, `["read_blockchain"]`, "[\n  \"read_blockchain\",\n  \"Read-Lightning\",\n]", 1), []string{`module.toml:6: capabilities[1]: "Read-Lightning" is not a valid capability name (lowercase letters, digits and '_')`}},
		{"duplicate capability", strings.Replace(validTOML, `["read_blockchain"]`, `["read_blockchain", "read_blockchain"]`, 1), []string{`module.toml:4: capabilities[1]: "read_blockchain" is already listed as capabilities[0]`}},
		{"bad constraint", strings.Replace(validTOML, `">=0.1.0"`, `">=banana"`, 1), []string{`module.toml:7: dependencies.blvm-node: invalid version constraint: constraint ">=banana": improper constraint: ">=banana"`}},
		{"empty constraint", strings.Replace(validTOML, `">=0.1.0"`, `""`, 1), []string{`module.toml:7: dependencies.blvm-node: invalid version constraint: constraint is empty`}},
		{"bad dependency name", validTOML + "[optional_dependencies]\n\"Bad Name\" = \"^1.0\"\n", []string{`module.toml:13: optional_dependencies."Bad Name": "Bad Name" is not a valid module name`}},
		{"self dependency", strings.Replace(validTOML, `"blvm-node" = ">=0.1.0"`, `good-module = "^1"`, 1), []string{`module.toml:7: dependencies.good-module: a module cannot depend on itself`}},
		{"dependency twice", validTOML + "[optional_dependencies]\n\"blvm-node\" = \"^1\"\n", []string{`module.toml:13: optional_dependencies.blvm-node: "blvm-node" is also a required dependency`}},
		{"uppercase hash", strings.Replace(validTOML, "sha256:2c26", "sha256:2C26", 1), []string{`module.toml:10: binary.hash: "sha256:2C26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae": want "sha256:" and 64 lowercase hex digits`}},
		{"zero size", strings.Replace(validTOML, "size = 3", "size = 0", 1), []string{`module.toml:11: binary.size: 0: want a size in bytes between 1 and 2^53-1`}},
		{"huge size", strings.Replace(validTOML, "size = 3", "size = 9007199254740992", 1), []string{`module.toml:11: binary.size: 9007199254740992: want a size in bytes between 1 and 2^53-1`}},
		{"config pinned", validTOML + "[config]\nhash = \"sha256:" + strings.Repeat("ab", 32) + "\"\nsize = 0\n", nil},
		{"config bad hash", validTOML + "[config]\nhash = \"md5:x\"\nsize = 10\n", []string{`module.toml:13: config.hash: "md5:x": want "sha256:" and 64 lowercase hex digits`}},
		{"config too big", validTOML + "[config]\nhash = \"sha256:" + strings.Repeat("ab", 32) + "\"\nsize = 1048577\n", []string{`module.toml:14: config.size: 1048577: want a size in bytes between 0 and 1048576`}},
		{"config unknown key", validTOML + "[config]\nhash = \"sha256:" + strings.Repeat("ab", 32) + "\"\nsize = 1\npath = \"x\"\n", []string{`module.toml:15: config.path: unknown key (did you mean "hash"?)`}},
		{"expires not a datetime", top(`expires = "2027-01-01"`), []string{`module.toml:6: expires: wrong type: want a datetime such as 2027-01-01T00:00:00Z`}},
		{"offset expires", top("expires = 2027-01-01T00:00:00+02:00"), nil},
		{"local expires", top("expires = 2027-01-01"), []string{`module.toml:6: expires: must be an offset datetime such as 2027-01-01T00:00:00Z, so it means the same instant everywhere`}},
		{"negative price", validTOML + "[payment]\nprice_sats = -1\n", []string{`module.toml:13: payment.price_sats: -1: want 0 to 2100000000000000`}},
		{"required payment incomplete", validTOML + "[payment]\nrequired = true\nprice_sats = 0\n", []string{
			`module.toml:12: payment.author_payment_code: required when payment is required`,
			`module.toml:12: payment.commons_payment_code: required when payment is required`,
			`module.toml:12: payment.payment_signature: required when payment is required`,
			`module.toml:14: payment.price_sats: must be positive when payment is required`,
		}},
		{"free payment", validTOML + "[payment]\nrequired = false\nprice_sats = 0\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseBytes("module.toml", []byte(tt.src))
			var got []string
			if err != nil {
				var ps Problems
				if !errors.As(err, &ps) {
					t.Fatalf("error is %T, not Problems: %v", err, err)
				}
				for _, p := range ps {
					got = append(got, p.String())
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

const pubG = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"

func TestValidateSignatures(t *testing.T) {
	compact := strings.Repeat("11", 64)
	der := "3006020101020101"
	tests := []struct {
		name string
		sigs Signatures
		want []string
	}{
		{"compact ok", Signatures{Threshold: "1-of-1", Maintainers: []Maintainer{{Name: "a", PublicKey: pubG, Signature: compact}}}, nil},
		{"der ok", Signatures{Threshold: "1-of-2", Maintainers: []Maintainer{{Name: "a", PublicKey: strings.ToUpper(pubG), Signature: der}}}, nil},
		{"bad threshold", Signatures{Threshold: "3-of-2", Maintainers: []Maintainer{{Name: "a", PublicKey: pubG, Signature: compact}}},
			[]string{`signatures.threshold: threshold "3-of-2": need 1 <= m <= n`}},
		{"no maintainers", Signatures{Threshold: "1-of-1"}, []string{"signatures.maintainers: at least one signature is required when [signatures] is present"}},
		{"bad entry", Signatures{Threshold: "1-of-1", Maintainers: []Maintainer{{PublicKey: "04" + pubG[2:], Signature: "abcd"}}}, []string{
			"signatures.maintainers[0].name: required",
			`signatures.maintainers[0].public_key: public key "04` + pubG[2:] + `": invalid public key: unsupported format: 4`,
			"signatures.maintainers[0].signature: 2 bytes: want 64-byte compact r||s or a DER signature",
		}},
		{"uncompressed key", Signatures{Threshold: "1-of-1", Maintainers: []Maintainer{{Name: "a", PublicKey: "04" + strings.Repeat("00", 64), Signature: compact}}},
			[]string{`signatures.maintainers[0].public_key: public key "04` + strings.Repeat("00", 64) + `": want 33 bytes compressed, got 65`}},
		{"not on curve", Signatures{Threshold: "1-of-1", Maintainers: []Maintainer{{Name: "a", PublicKey: "02" + strings.Repeat("ff", 32), Signature: compact}}},
			[]string{`signatures.maintainers[0].public_key: public key "02` + strings.Repeat("ff", 32) + `": invalid public key: x >= field prime`}},
		{"missing signature", Signatures{Threshold: "1-of-1", Maintainers: []Maintainer{{Name: "a", PublicKey: pubG}}}, []string{"signatures.maintainers[0].signature: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseBytes("", []byte(validTOML))
			if err != nil {
				t.Fatal(err)
			}
			m.Signatures = &tt.sigs
			var got []string
			for _, p := range m.Validate() {
				got = append(got, p.Field+": "+p.Message)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestParseThreshold(t *testing.T) {
	tests := []struct {
		in     string
		m, n   int
		wantOK bool
	}{
		{"2-of-3", 2, 3, true},
		{"1-of-1", 1, 1, true},
		{"3-of-3", 3, 3, true},
		{"0-of-3", 0, 0, false},
		{"4-of-3", 0, 0, false},
		{"2 of 3", 0, 0, false},
		{"2-of-", 0, 0, false},
		{"-1-of-3", 0, 0, false},
		{"", 0, 0, false},
		{"99999-of-99999", 0, 0, false},
	}
	for _, tt := range tests {
		m, n, err := ParseThreshold(tt.in)
		if (err == nil) != tt.wantOK || m != tt.m || n != tt.n {
			t.Errorf("ParseThreshold(%q) = %d, %d, %v", tt.in, m, n, err)
		}
	}
}

func TestParseVersionAndConstraint(t *testing.T) {
	for _, c := range []struct {
		constraint, version string
		match               bool
	}{
		{">=1.0.0", "1.0.0", true},
		{">=1.0.0", "0.9.9", false},
		{"^1.2", "1.9.0", true},
		{"^1.2", "2.0.0", false},
		{"~1.2.3", "1.2.9", true},
		{"~1.2.3", "1.3.0", false},
		{">=1.0.0, <2.0.0", "1.5.0", true},
		{">=1.0.0, <2.0.0", "2.0.0", false},
	} {
		cons, err := ParseConstraint(c.constraint)
		if err != nil {
			t.Fatalf("ParseConstraint(%q): %v", c.constraint, err)
		}
		v, err := ParseVersion(c.version)
		if err != nil {
			t.Fatalf("ParseVersion(%q): %v", c.version, err)
		}
		if got := cons.Check(v); got != c.match {
			t.Errorf("%q matches %q = %v, want %v", c.constraint, c.version, got, c.match)
		}
	}
	for _, bad := range []string{"", "1", "1.0", "v1.0.0", "01.0.0", "1.0.0.0"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) succeeded", bad)
		}
	}
	for _, bad := range []string{"", "  ", ">=banana", "1.0.0 ||| 2"} {
		if _, err := ParseConstraint(bad); err == nil {
			t.Errorf("ParseConstraint(%q) succeeded", bad)
		}
	}
}

func TestValidateWithoutLines(t *testing.T) {
	m := &Manifest{Name: "x", Version: "1.0.0", EntryPoint: "x", Capabilities: []string{"bad-name"}}
	ps := m.Validate()
	if len(ps) != 1 || ps[0].String() != `module.toml: capabilities[0]: "bad-name" is not a valid capability name (lowercase letters, digits and '_')` {
		t.Errorf("got %v", ps)
	}
}

func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/lightning-network.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(validTOML))
	f.Add([]byte(signedBase))
	f.Add([]byte(signedReformatted))
	f.Add([]byte("a = [ { b = \"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseBytes(FileName, data)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			return
		}
		if m == nil {
			t.Fatal("nil manifest without an error")
		}
		if ps := m.Validate(); len(ps) != 0 {
			t.Fatalf("clean parse but Validate finds %v", ps)
		}
		if _, err := SigningView(m); err != nil {
			t.Fatalf("clean parse but SigningView: %v", err)
		}
	})
}
