package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/registry/market"
	"github.com/blvm/blvm-sandbox/registry/server"
	"github.com/blvm/blvm-sandbox/verify"
)

// probeRelease writes probe at version with caps into a dir of its own,
// signed 2-of-3 by alice and bob (the keys signedModule made in base).
func probeRelease(t *testing.T, base, version string, caps ...string) string {
	t.Helper()
	dir := filepath.Join(base, "probe-"+version)
	os.MkdirAll(dir, 0o755)
	q := make([]string, len(caps))
	for i, c := range caps {
		q[i] = fmt.Sprintf("%q", c)
	}
	m := fmt.Sprintf("name = \"probe\"\nversion = %q\nentry_point = \"probe\"\ncapabilities = [%s]\n", version, strings.Join(q, ", "))
	os.WriteFile(filepath.Join(dir, "module.toml"), []byte(m), 0o644)
	os.WriteFile(filepath.Join(dir, "probe"), elftest.Static("probe "+version+"\n"), 0o755)
	for _, k := range []string{"alice", "bob"} {
		if _, errOut, code := cli(t, "sign", "--key", filepath.Join(base, k+".key"), "--binary", filepath.Join(dir, "probe"), "--threshold", "2-of-3", dir); code != 0 {
			t.Fatalf("sign probe %s: %s", version, errOut)
		}
	}
	return dir
}

// registryNode is a registry on loopback, and a node config pinning it
// and the maintainers; publish adds a module dir to the registry.
func registryNode(t *testing.T, extra string) (base, reg, nodeConfig, root string, publish func(string)) {
	t.Helper()
	dir, nodeConfig, root := signedModule(t)
	base = filepath.Dir(dir)
	reg = filepath.Join(base, "reg")
	if _, errOut, code := cli(t, "registry", "init", reg); code != 0 {
		t.Fatalf("registry init: %s", errOut)
	}
	srv := httptest.NewServer(server.Handler(reg, nil))
	t.Cleanup(srv.Close)
	cfg, _ := os.ReadFile(nodeConfig)
	cfg = append(cfg, fmt.Sprintf("[paths]\nroot = %q\n[registry]\nurl = %q\nroot = %q\n%s", root, srv.URL, filepath.Join(reg, "root.json"), extra)...)
	os.WriteFile(nodeConfig, cfg, 0o644)
	publish = func(d string) {
		t.Helper()
		if out, errOut, code := cli(t, "registry", "publish", reg, d); code != 0 {
			t.Fatalf("publish %s: %s %s", d, out, errOut)
		}
	}
	return base, reg, nodeConfig, root, publish
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestUpdateLeavesCurrentModulesAlone: `update` with every module at its
// newest version installs nothing (the module dir is the same inode, the
// marks are untouched); once a newer version is published it upgrades.
func TestUpdateLeavesCurrentModulesAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	base, _, nodeConfig, root, publish := registryNode(t, "")
	publish(probeRelease(t, base, "1.0.0", "read_blockchain"))
	none := filepath.Join(base, "none.sock")
	if out, errOut, code := cli(t, "--admin-socket", none, "install", "probe", "--node-config", nodeConfig, "--yes"); code != 0 {
		t.Fatalf("install: %s %s", out, errOut)
	}
	mod := filepath.Join(root, "modules", "probe")
	before := inode(t, mod)
	marks, _ := os.ReadFile(filepath.Join(root, "trust", "highwater.json"))

	out, errOut, code := cli(t, "--admin-socket", none, "update", "--node-config", nodeConfig, "--yes")
	if code != 0 || !strings.Contains(out, "nothing to update") || strings.Contains(out, "installed") {
		t.Fatalf("update with probe current: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code = cli(t, "--admin-socket", none, "update", "probe", "--node-config", nodeConfig, "--yes", "--json"); code != 0 || !strings.Contains(out, `"plan": []`) {
		t.Fatalf("update probe --json with probe current: exit %d\n%s", code, out)
	}
	if inode(t, mod) != before {
		t.Fatal("update reinstalled probe though it was current")
	}
	if now, _ := os.ReadFile(filepath.Join(root, "trust", "highwater.json")); string(now) != string(marks) {
		t.Fatalf("update changed the marks: %s -> %s", marks, now)
	}

	publish(probeRelease(t, base, "1.0.1", "read_blockchain"))
	out, errOut, code = cli(t, "--admin-socket", none, "update", "--node-config", nodeConfig, "--yes")
	if code != 0 || !strings.Contains(out, "upgrade   probe 1.0.1 (from 1.0.0)") || !strings.Contains(out, "installed probe 1.0.1") {
		t.Fatalf("update with 1.0.1 published: exit %d\n%s%s", code, out, errOut)
	}
	if inode(t, mod) == before {
		t.Fatal("probe 1.0.1 was not installed")
	}
}

// TestInstallPlanShowsCapabilitiesAboveTheCeiling: a module asking for a
// capability above the operator's ceiling is refused with the whole plan
// shown first, the capability marked with what would allow it; with that
// allow the same install goes through.
func TestInstallPlanShowsCapabilitiesAboveTheCeiling(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	base, _, nodeConfig, root, publish := registryNode(t, "")
	publish(probeRelease(t, base, "1.0.0", "read_blockchain", "governance_vote"))
	out, errOut, code := cli(t, "install", "probe", "--node-config", nodeConfig, "--dry-run")
	mark := `install   probe 1.0.0: requested; grants read_blockchain; ABOVE THE CEILING: governance_vote (tier "govern" is above the operator ceiling "participate"; allow with [modules.probe] allow = ["governance_vote"])`
	if code != 1 || !strings.Contains(out, mark) || !strings.Contains(errOut, "capabilities above the operator's ceiling: probe 1.0.0: governance_vote") {
		t.Fatalf("install --dry-run above the ceiling: exit %d\nstdout %s\nstderr %s\nwant the plan line %s", code, out, errOut, mark)
	}
	out, _, _ = cli(t, "install", "probe", "--node-config", nodeConfig, "--dry-run", "--json")
	var plan struct {
		Plan []struct {
			AboveCeiling []struct{ Capability, Allow string } `json:"above_ceiling"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan.Plan) != 1 || len(plan.Plan[0].AboveCeiling) != 1 || plan.Plan[0].AboveCeiling[0].Capability != "governance_vote" {
		t.Fatalf("--json plan: %v %s", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "registry", "stage")); len(ents) != 0 {
		t.Errorf("the refused plan left %d staged dirs", len(ents))
	}
	cfg, _ := os.ReadFile(nodeConfig)
	os.WriteFile(nodeConfig, append(cfg, "[modules.probe]\nallow = [\"governance_vote\"]\n"...), 0o644)
	if out, errOut, code = cli(t, "install", "probe", "--node-config", nodeConfig, "--dry-run"); code != 0 || strings.Contains(out, "ABOVE") {
		t.Fatalf("with the allow: exit %d %s %s", code, out, errOut)
	}
}

// TestPaymentSignatureCheckedByVerifyAndPublish: a paid module whose
// payment_signature is not the author's over its terms fails `verify`
// (a payment FAIL line) and `registry publish`; signed by the key of
// author_payment_code, both accept it.
func TestPaymentSignatureCheckedByVerifyAndPublish(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	base, reg, nodeConfig, _, _ := registryNode(t, "")
	author, _ := verify.GenerateKey()
	pc := market.PaymentCode(author.PubKey(), [32]byte{9})
	terms := market.Terms{Module: "probe", Version: "2.0.0", Required: true, PriceSats: 500, AuthorPaymentCode: pc, CommonsPaymentCode: pc}
	td, _ := terms.Digest()
	other, _ := verify.GenerateKey()
	for _, tc := range []struct {
		name, sig string
		ok        bool
	}{
		{"another key's signature", verify.SignDigest(other, td), false},
		{"the author's signature", verify.SignDigest(author, td), true},
	} {
		dir := filepath.Join(base, "paid-"+strings.ReplaceAll(tc.name, " ", "-"))
		os.MkdirAll(dir, 0o755)
		m := fmt.Sprintf("name = \"probe\"\nversion = \"2.0.0\"\nentry_point = \"probe\"\ncapabilities = [\"read_blockchain\"]\n[payment]\nrequired = true\nprice_sats = 500\nauthor_payment_code = %q\ncommons_payment_code = %q\npayment_signature = %q\n", pc, pc, tc.sig)
		os.WriteFile(filepath.Join(dir, "module.toml"), []byte(m), 0o644)
		os.WriteFile(filepath.Join(dir, "probe"), elftest.Static("paid\n"), 0o755)
		for _, k := range []string{"alice", "bob"} {
			if _, errOut, code := cli(t, "sign", "--key", filepath.Join(base, k+".key"), "--binary", filepath.Join(dir, "probe"), "--threshold", "2-of-3", dir); code != 0 {
				t.Fatalf("sign: %s", errOut)
			}
		}
		out, errOut, code := cli(t, "verify", "--node-config", nodeConfig, dir)
		_, pubErr, pubCode := cli(t, "registry", "publish", reg, dir)
		if tc.ok {
			if code != 0 || !strings.Contains(out, "ok  payment") || pubCode != 0 {
				t.Errorf("%s: verify exit %d\n%s%s\npublish exit %d %s", tc.name, code, out, errOut, pubCode, pubErr)
			}
			continue
		}
		if code != 1 || !strings.Contains(out, "FAIL  payment") || !strings.Contains(out, "not a valid signature over the payment terms by the key of author_payment_code") {
			t.Errorf("%s: verify exit %d, want 1 with a payment FAIL:\n%s%s", tc.name, code, out, errOut)
		}
		if pubCode == 0 || !strings.Contains(pubErr, "payment_signature") {
			t.Errorf("%s: publish exit %d %s, want a refusal naming payment_signature", tc.name, pubCode, pubErr)
		}
	}
}

// TestInstallTimings: `install NAME --timings` ends with one line naming
// every stage in order, each a number of milliseconds, whose sum is the
// total.
func TestInstallTimings(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the store is root-owned: run as root")
	}
	base, _, nodeConfig, _, publish := registryNode(t, "")
	publish(probeRelease(t, base, "1.0.0", "read_blockchain"))
	none := filepath.Join(base, "none.sock")
	_, errOut, code := cli(t, "--admin-socket", none, "install", "probe", "--node-config", nodeConfig, "--yes", "--timings")
	if code != 0 {
		t.Fatalf("install --timings: exit %d %s", code, errOut)
	}
	var line string
	for _, l := range strings.Split(errOut, "\n") {
		if strings.HasPrefix(l, "timings: ") {
			line = l
		}
	}
	fields := strings.Fields(strings.TrimPrefix(line, "timings: "))
	want := []string{"refresh", "resolve", "download", "verify", "plan", "commit", "register", "cleanup", "total"}
	if len(fields) != len(want) {
		t.Fatalf("timings line %q, want the stages %v", line, want)
	}
	var sum, total float64
	for i, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		n, err := strconv.ParseFloat(strings.TrimSuffix(v, "ms"), 64)
		if !ok || k != want[i] || err != nil || n < 0 || !strings.HasSuffix(v, "ms") {
			t.Fatalf("stage %d: %q, want %s=<ms>", i, f, want[i])
		}
		if k == "total" {
			total = n
		} else {
			sum += n
		}
	}
	// Each stage is rounded to 10 µs; the total also holds the moment
	// between the last mark and the print.
	if sum > total+0.1 || total-sum > 1 {
		t.Fatalf("stages sum to %.2f ms, total %.2f ms: %q", sum, total, line)
	}
}
