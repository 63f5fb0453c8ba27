package nodeconfig

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/manifest"
)

// Public keys of the published test vectors (docs/signing.md).
const (
	alice = "03bc4fcc662bfe95640fb1277b88ce74c153d049c58c0097187852329feb910d1b"
	bob   = "028fd69c7853c2e0382ea446ed03546db7202ffd5425525f8c04e9fcd47567c42d"
	carol = "023cbf4dcc2d14807c41e0477dfa19aa36275ad209fa49ce22e57d7e988317de98"
)

const fullConfig = `[node]
version = "1.4.0"
network = "mainnet"

[paths]
root = "/srv/blvm"

[sandbox]
restart_delay = "1s"
max_crashes = 3

[trust]
threshold = "2-of-3"
maintainers = [
    { name = "alice", public_key = "` + alice + `" },
    { name = "bob", public_key = "` + bob + `" },
    { name = "carol", public_key = "` + carol + `" },
]

[capabilities]
max_tier = "govern"
deny = ["send_transactions"]

[limits]
memory_bytes = 536870912
cpus = 1.0

[modules.lightning-network]
threshold = "1-of-2"
maintainers = ["alice", "bob"]
allow = ["send_transactions"]
deny = ["governance_vote"]
allow_downgrade = true
network = "testnet"
fee_rate = 2
database_backend = "rocksdb"

[modules.lightning-network.limits]
pids = 128

[modules.blvm-mesh]
peers = ["a", "b"]

[provided_capabilities.read_lightning]
provider = "lightning-network"
description = "Query channels and invoices"
tier = "observe"
danger = "low"
`

func TestParseEmptyIsDefault(t *testing.T) {
	c, err := ParseBytes("", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Lines = nil
	want := Default()
	want.Lines = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("empty config = %+v, want %+v", c, want)
	}
	d := Default()
	if d.Paths.Root != "/var/lib/blvm-sandbox" || d.Sandbox.MinLandlockABI != 6 || d.Capabilities.MaxTier != "participate" ||
		d.Limits != (Limits{MemoryBytes: 256 << 20, Pids: 64, CPUs: 0.5, OpenFiles: 256, TmpBytes: 16 << 20}) ||
		d.Node != (Node{Version: "0.1.0", Network: "regtest", DatabaseBackend: "redb"}) {
		t.Errorf("Default() = %+v", d)
	}
}

func TestParseFull(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(p, []byte(fullConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(p)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Node != (Node{Version: "1.4.0", Network: "mainnet", DatabaseBackend: "redb"}) {
		t.Errorf("node = %+v (database_backend should default)", c.Node)
	}
	if c.Paths != (Paths{Root: "/srv/blvm", ModulesDir: "/srv/blvm/modules"}) {
		t.Errorf("paths = %+v (modules_dir should default under root)", c.Paths)
	}
	wantSandbox := Default().Sandbox
	wantSandbox.RestartDelay, wantSandbox.MaxCrashes = time.Second, 3
	if c.Sandbox != wantSandbox {
		t.Errorf("sandbox = %+v", c.Sandbox)
	}
	if c.Limits != (Limits{MemoryBytes: 512 << 20, Pids: 64, CPUs: 1, OpenFiles: 256, TmpBytes: 16 << 20}) {
		t.Errorf("limits = %+v", c.Limits)
	}
	ln := c.ModuleSettings("lightning-network")
	wantLN := &Module{
		Threshold: "1-of-2", Maintainers: []string{"alice", "bob"},
		Allow: []string{"send_transactions"}, Deny: []string{"governance_vote"},
		Limits: Limits{Pids: 128}, AllowDowngrade: true,
		Config: map[string]any{"network": "testnet", "fee_rate": int64(2), "database_backend": "rocksdb"},
	}
	if !reflect.DeepEqual(ln, wantLN) {
		t.Errorf("lightning-network settings = %+v, want %+v", ln, wantLN)
	}
	if got := c.ModuleSettings("blvm-mesh").Config["peers"]; !reflect.DeepEqual(got, []any{"a", "b"}) {
		t.Errorf("blvm-mesh peers = %#v", got)
	}
	if none := c.ModuleSettings("absent"); none == nil || none.Config == nil || none.Threshold != "" {
		t.Errorf("ModuleSettings(absent) = %+v", none)
	}
	if got := c.EffectiveLimits("lightning-network"); got != (Limits{MemoryBytes: 512 << 20, Pids: 128, CPUs: 1, OpenFiles: 256, TmpBytes: 16 << 20}) {
		t.Errorf("EffectiveLimits(lightning-network) = %+v", got)
	}
	if got := c.EffectiveLimits("absent"); got != c.Limits {
		t.Errorf("EffectiveLimits(absent) = %+v", got)
	}
	if got := (&Config{}).EffectiveLimits("x"); got != Default().Limits {
		t.Errorf("EffectiveLimits on a zero Config = %+v", got)
	}
	if p := c.Provided["read_lightning"]; p.Provider != "lightning-network" || p.Tier != "observe" || p.Danger != "low" {
		t.Errorf("provided = %+v", p)
	}

	m, n, keys, err := c.ThresholdFor("lightning-network")
	if err != nil || m != 1 || n != 2 || len(keys) != 2 || keys[0].Name != "alice" || keys[1].Name != "bob" {
		t.Errorf("ThresholdFor(lightning-network) = %d, %d, %v, %v", m, n, keys, err)
	}
	m, n, keys, err = c.ThresholdFor("blvm-mesh")
	if err != nil || m != 2 || n != 3 || len(keys) != 3 {
		t.Errorf("ThresholdFor(blvm-mesh) = %d, %d, %v, %v", m, n, keys, err)
	}
	if _, _, _, err := Default().ThresholdFor("x"); err == nil || !strings.Contains(err.Error(), "no signature threshold configured") {
		t.Errorf("ThresholdFor without trust: %v", err)
	}
}

func TestThresholdForErrors(t *testing.T) {
	c := Default()
	c.Trust = Trust{Threshold: "2-of-2", Maintainers: []Maintainer{{Name: "alice", PublicKey: alice}, {Name: "bob", PublicKey: bob}}}
	c.Modules["a"] = &Module{Maintainers: []string{"mallory"}}
	c.Modules["b"] = &Module{Threshold: "2-of-3"}
	c.Modules["c"] = &Module{Threshold: "two"}
	for name, want := range map[string]string{
		"a": `module a: maintainer "mallory" is not pinned in [trust]`,
		"b": `module b: [modules.b] threshold "2-of-3" needs n = 3 pinned keys, but 2 apply (alice, bob)`,
		"c": `module c: [modules.c] threshold: threshold "two": want "m-of-n", e.g. "2-of-3"`,
	} {
		if _, _, _, err := c.ThresholdFor(name); err == nil || err.Error() != want {
			t.Errorf("ThresholdFor(%s) = %v, want %s", name, err, want)
		}
	}
}

func TestTierRank(t *testing.T) {
	for i, tier := range Tiers {
		if TierRank(tier) != i {
			t.Errorf("TierRank(%q) = %d, want %d", tier, TierRank(tier), i)
		}
	}
	if TierRank("observe") >= TierRank("transact") {
		t.Errorf("tiers are not ordered low to high")
	}
	if TierRank("root") != -1 || TierRank("") != -1 {
		t.Errorf("unknown tiers must rank -1")
	}
}

func trust(threshold string, keys ...string) string {
	s := "[trust]\n"
	if threshold != "" {
		s += "threshold = \"" + threshold + "\"\n"
	}
	s += "maintainers = [\n"
	for _, k := range keys {
		name, key, _ := strings.Cut(k, "=")
		s += "    { name = \"" + name + "\", public_key = \"" + key + "\" },\n"
	}
	return s + "]\n"
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"syntax", "[node\n", []string{`node.toml:2: invalid TOML: expected '.' or ']' to end table name, but got '\n' instead`}},
		{"unknown table", "[limit]\npids = 1\n", []string{`node.toml:1: limit: unknown key (did you mean "limits"?)`}},
		{"unknown key", "[sandbox]\nmin_landlock_abi = 7\nmin_landlock = 3\n", []string{`node.toml:3: sandbox.min_landlock: unknown key (did you mean "min_landlock_abi"?)`}},
		{"valid trust", trust("1-of-1", "alice="+alice) + "", nil},
		{"unknown key in pinned key", "[trust]\nthreshold = \"1-of-1\"\nmaintainers = [{ name = \"a\", public_key = \"" + alice + "\", pubkey = \"x\" }]\n",
			[]string{`node.toml:3: trust.maintainers.pubkey: unknown key`}},
		{"unknown module limit", "[modules.m.limits]\npid = 3\n", []string{`node.toml:2: modules.m.limits.pid: unknown key (did you mean "pids"?)`}},
		{"unknown provided key", "[provided_capabilities.read_x]\nprovider = \"m\"\ntier = \"observe\"\ndanger = \"low\"\ndager = 1\n",
			[]string{`node.toml:5: provided_capabilities.read_x.dager: unknown key (did you mean "danger"?)`}},
		{"wrong type", "[limits]\npids = \"many\"\ncpus = 2.0\n", []string{`node.toml:2: limits.pids: wrong type: want an integer, not a string`}},

		{"duplicate key under two names", trust("2-of-2", "alice="+alice, "bob="+alice),
			[]string{`node.toml:5: trust.maintainers[1].public_key: key of "bob" is already pinned as "alice"`}},
		{"same key in different hex case", trust("2-of-2", "alice="+alice, "alice2="+strings.ToUpper(alice)),
			[]string{`node.toml:5: trust.maintainers[1].public_key: key of "alice2" is already pinned as "alice"`}},
		{"name pinned twice", trust("2-of-2", "alice="+alice, "alice="+bob),
			[]string{`node.toml:5: trust.maintainers[1].name: maintainer "alice" is pinned twice`}},
		{"bad key", trust("1-of-1", "alice=02abc"),
			[]string{`node.toml:4: trust.maintainers[0].public_key: public key "02abc": not hex`}},
		{"key not on curve", trust("1-of-1", "alice=02"+strings.Repeat("ff", 32)),
			[]string{`node.toml:4: trust.maintainers[0].public_key: public key "02` + strings.Repeat("ff", 32) + `": invalid public key: x >= field prime`}},
		{"missing name", trust("1-of-1", "="+alice), []string{`node.toml:4: trust.maintainers[0].name: required`}},
		{"n too big", trust("2-of-3", "alice="+alice, "bob="+bob),
			[]string{`node.toml:2: trust.threshold: "2-of-3" needs n = 3 pinned keys, but 2 are pinned (alice, bob)`}},
		{"n too small", trust("1-of-1", "alice="+alice, "bob="+bob),
			[]string{`node.toml:2: trust.threshold: "1-of-1" needs n = 1 pinned keys, but 2 are pinned (alice, bob)`}},
		{"threshold without keys", "[trust]\nthreshold = \"1-of-1\"\n",
			[]string{`node.toml:2: trust.threshold: "1-of-1" needs n = 1 pinned keys, but 0 are pinned (none)`}},
		{"keys without threshold", trust("", "alice="+alice),
			[]string{`node.toml:1: trust.threshold: required when keys are pinned, e.g. "1-of-1"`}},
		{"bad threshold", trust("3-of-1", "alice="+alice),
			[]string{`node.toml:2: trust.threshold: threshold "3-of-1": need 1 <= m <= n`}},
		{"empty trust", "[trust]\n", nil},
		{"module threshold mismatch", trust("2-of-2", "alice="+alice, "bob="+bob) + "[modules.m]\nthreshold = \"1-of-1\"\n",
			[]string{`node.toml:8: modules.m.threshold: [modules.m] threshold "1-of-1" needs n = 1 pinned keys, but 2 apply (alice, bob)`}},
		{"module subset mismatch", trust("2-of-2", "alice="+alice, "bob="+bob) + "[modules.m]\nmaintainers = [\"alice\"]\n",
			[]string{`node.toml:8: modules.m.maintainers: [trust] threshold "2-of-2" needs n = 2 pinned keys, but 1 apply (alice)`}},
		{"module subset ok", trust("2-of-2", "alice="+alice, "bob="+bob) + "[modules.m]\nthreshold = \"1-of-1\"\nmaintainers = [\"bob\"]\n", nil},
		{"module maintainer not pinned", trust("1-of-1", "alice="+alice) + "[modules.m]\nthreshold = \"1-of-1\"\nmaintainers = [\"mallory\"]\n",
			[]string{`node.toml:8: modules.m.maintainers[0]: maintainer "mallory" is not pinned in [trust]`}},
		{"module maintainer twice", trust("2-of-2", "alice="+alice, "bob="+bob) + "[modules.m]\nmaintainers = [\"alice\", \"alice\"]\n",
			[]string{`node.toml:8: modules.m.maintainers[1]: maintainer "alice" is listed twice`}},
		{"bad module name", "[modules.Bad_Name]\nx = 1\n", []string{`node.toml:1: modules.Bad_Name: "Bad_Name" is not a valid module name`}},
		{"quoted module name", "[modules.\"bad name\"]\nx = 1\n", []string{`node.toml:1: modules."bad name": "bad name" is not a valid module name`}},
		{"misspelled reserved key", "[modules.m]\ndenny = [\"read_blockchain\"]\n",
			[]string{`node.toml:2: modules.m.denny: looks like a misspelled "deny" (module configuration keys must not be near-misses of reserved keys)`}},
		{"allowed and denied", "[modules.m]\nallow = [\"governance_vote\"]\ndeny = [\"governance_vote\"]\n",
			[]string{`node.toml:2: modules.m.allow[0]: "governance_vote" is both allowed and denied`}},
		{"bad capability in deny", "[capabilities]\ndeny = [\"Read\", \"read_x\", \"read_x\"]\n", []string{
			`node.toml:2: capabilities.deny[0]: "Read" is not a valid capability name`,
			`node.toml:2: capabilities.deny[2]: "read_x" is listed twice`,
		}},
		{"unknown tier", "[capabilities]\nmax_tier = \"goverm\"\n", []string{`node.toml:2: capabilities.max_tier: unknown tier "goverm" (did you mean "govern"?)`}},
		{"far tier", "[capabilities]\nmax_tier = \"root\"\n", []string{`node.toml:2: capabilities.max_tier: unknown tier "root": want one of observe, participate, govern, transact`}},
		{"provided", "[provided_capabilities.read_x]\nprovider = \"Bad\"\ntier = \"nope\"\ndanger = \"extreme\"\n", []string{
			`node.toml:2: provided_capabilities.read_x.provider: "Bad" is not a valid module name`,
			`node.toml:3: provided_capabilities.read_x.tier: unknown tier "nope": want one of observe, participate, govern, transact`,
			`node.toml:4: provided_capabilities.read_x.danger: "extreme": want one of low, medium, high, critical`,
		}},
		{"provided bad name", "[provided_capabilities.X]\nprovider = \"m\"\ntier = \"observe\"\ndanger = \"low\"\n",
			[]string{`node.toml:1: provided_capabilities.X: "X" is not a valid capability name`}},
		{"limits", "[limits]\nmemory_bytes = 0\npids = -1\ncpus = 65.0\nopen_files = 0\ntmp_bytes = -5\n", []string{
			`node.toml:2: limits.memory_bytes: 0: must be positive`,
			`node.toml:3: limits.pids: -1: must be positive`,
			`node.toml:4: limits.cpus: 65: want more than 0 and at most 64`,
			`node.toml:5: limits.open_files: must be positive`,
			`node.toml:6: limits.tmp_bytes: -5: must be positive`,
		}},
		{"zero cpus", "[limits]\ncpus = 0.0\n", []string{`node.toml:2: limits.cpus: 0: want more than 0 and at most 64`}},
		{"module limits", "[modules.m]\nlimits = { cpus = -1.0 }\n", []string{`node.toml:2: modules.m.limits.cpus: -1: want more than 0 and at most 64`}},
		{"max cpus ok", "[limits]\ncpus = 64.0\n", nil},
		{"node", "[node]\nversion = \"1.0\"\nnetwork = \"mainet\"\ndatabase_backend = \"\"\n", []string{
			`node.toml:2: node.version: not a strict semantic version: version "1.0": invalid semantic version`,
			`node.toml:3: node.network: "mainet": want one of mainnet, testnet, signet, regtest`,
			`node.toml:4: node.database_backend: must not be empty`,
		}},
		{"sandbox", "[paths]\nroot = \"var/lib/x/\"\n[sandbox]\nmin_landlock_abi = 0\nstop_grace = \"-1s\"\nmax_crashes = 0\n", []string{
			`node.toml:2: paths.root: "var/lib/x/": want a clean absolute path`,
			`node.toml:4: sandbox.min_landlock_abi: 0: want 6 or more: every module's policy has the abstract-unix and signal scopes, which need Landlock ABI 6, so below it no module could start`,
			`node.toml:5: sandbox.stop_grace: -1s: want a positive duration such as "5s"`,
			`node.toml:6: sandbox.max_crashes: 0: want 1 or more`,
		}},
		{"duration", "[sandbox]\nrestart_delay = \"soon\"\n", []string{
			`node.toml:2: sandbox.restart_delay: invalid duration: "soon"`,
		}},
		{"disk quota", "[sandbox]\ndisk_bytes = 1024\ndisk_inodes = 10\nuid_base = 70000\n[modules.m]\ndisk_bytes = 5\n", []string{
			`node.toml:2: sandbox.disk_bytes: 1024: want at least 16777216 (16 MiB)`,
			`node.toml:3: sandbox.disk_inodes: 10: want at least 1024`,
			`node.toml:4: sandbox.uid_base: 70000: want a multiple of 65536 from 65536 to 2147483648`,
			`node.toml:6: modules.m.disk_bytes: 5: want at least 16777216 (16 MiB)`,
		}},
		{"module enabled", "[modules.m]\nenabled = \"no\"\n", []string{
			`node.toml:2: modules.m.enabled: wrong type: want a boolean, not a string`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblems(t, tt.src, tt.want)
		})
	}
}

// checkProblems parses src and compares the problems it reports, one
// "file:line: field: message" each, with want (nil: none); it returns the
// config when there were none.
func checkProblems(t *testing.T, src string, want []string) *Config {
	t.Helper()
	c, err := ParseBytes("/etc/blvm/node.toml", []byte(src))
	var got []string
	if err != nil {
		var ps manifest.Problems
		if !errors.As(err, &ps) {
			t.Fatalf("error is %T, not Problems: %v", err, err)
		}
		for _, p := range ps {
			got = append(got, p.String())
		}
		if c != nil {
			t.Errorf("config returned with problems")
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	return c
}

func TestEffectiveDisk(t *testing.T) {
	c, err := ParseBytes("node.toml", []byte("[sandbox]\ndisk_bytes = 2147483648\n[modules.big]\ndisk_bytes = 4294967296\ndisk_inodes = 5000\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		module        string
		bytes, inodes int64
	}{
		{"big", 4 << 30, 5000},
		{"other", 2 << 30, 1_000_000},
	} {
		b, i := c.EffectiveDisk(tt.module)
		if b != tt.bytes || i != tt.inodes {
			t.Errorf("EffectiveDisk(%s) = %d, %d; want %d, %d", tt.module, b, i, tt.bytes, tt.inodes)
		}
	}
	if _, ok := c.Modules["big"].Config["disk_bytes"]; ok {
		t.Error("disk_bytes leaked into the module's own configuration")
	}
	if b, i := Default().EffectiveDisk("m"); b != 1<<30 || i != 1_000_000 {
		t.Errorf("default quota %d bytes, %d inodes", b, i)
	}
}

func TestParseMissingFile(t *testing.T) {
	if _, err := Parse(filepath.Join(t.TempDir(), "nope.toml")); err == nil || !strings.Contains(err.Error(), "read node config") {
		t.Errorf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(fullConfig))
	f.Add([]byte(trust("2-of-2", "alice="+alice, "bob="+bob) + "[modules.m]\nmaintainers = [\"alice\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseBytes("node.toml", data)
		if err != nil {
			var ps manifest.Problems
			if !errors.As(err, &ps) || len(ps) == 0 || c != nil {
				t.Fatalf("bad error contract: %v, config %v", err, c != nil)
			}
			return
		}
		for name := range c.Modules {
			_ = c.EffectiveLimits(name)
			if m := c.ModuleSettings(name); m.Threshold != "" || len(m.Maintainers) > 0 {
				if _, _, _, err := c.ThresholdFor(name); err != nil {
					t.Fatalf("valid config but ThresholdFor(%s): %v", name, err)
				}
			}
		}
	})
}

// The annotated example operators copy must stay valid.
func TestAnnotatedExampleParses(t *testing.T) {
	c, err := Parse("../examples/node.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.IsEnabled("selective-sync") || !c.IsEnabled("stratum-v2") || c.Modules["selective-sync"].Config["database_backend"] != "redb" {
		t.Fatalf("modules: %+v", c.Modules)
	}
	if c.Sandbox != Default().Sandbox || c.Limits != Default().Limits || c.Paths != Default().Paths {
		t.Errorf("the example's values should be the defaults: %+v %+v %+v", c.Sandbox, c.Limits, c.Paths)
	}
}
