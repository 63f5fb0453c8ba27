package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitExposureCeiling is the highest `systemd-analyze security` exposure
// the unit may have; docs/systemd.md explains what remains.
const unitExposureCeiling = 3.7

// `make install` at a temporary prefix installs a unit that
// `systemd-analyze verify` accepts without a word about it, whose
// ExecStart binary finds the installed shim, and whose exposure stays at or
// below the documented score.
func TestRootInstallAndUnitVerify(t *testing.T) {
	requireRoot(t)
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the unit is not verified here")
	}
	prefix := t.TempDir()
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("make", "install", "PREFIX="+prefix+"/usr/local", "SYSCONFDIR="+prefix+"/etc"); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit := filepath.Join(prefix, "usr/local/lib/systemd/system/blvm-sandbox.service")
	for _, p := range []string{unit, prefix + "/usr/local/bin/blvm-sandbox", prefix + "/usr/local/libexec/blvm-sandbox/blvm-landlock-shim",
		prefix + "/etc/blvm-sandbox/node.toml", prefix + "/usr/local/share/doc/blvm-sandbox/systemd.md"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("make install did not install %s: %v", p, err)
		}
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "ExecStart="+prefix+"/usr/local/bin/blvm-sandbox up --config "+prefix+"/etc/blvm-sandbox/node.toml") {
		t.Errorf("the installed unit's ExecStart does not follow PREFIX and SYSCONFDIR:\n%s", b)
	}

	t.Run("verify", func(t *testing.T) {
		out, err := run(analyze, "verify", unit)
		var about []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "blvm-sandbox") {
				about = append(about, line)
			}
		}
		if err != nil || len(about) > 0 {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("security", func(t *testing.T) {
		out, _ := run(analyze, "security", "--offline=true", unit)
		m := regexp.MustCompile(`Overall exposure level for blvm-sandbox.service: ([0-9.]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("exposure %.1f", score)
		if score > unitExposureCeiling {
			t.Errorf("exposure %.1f is above %.1f: a hardening setting was lost\n%s", score, unitExposureCeiling, out)
		}
	})

	t.Run("the installed binary finds the installed shim", func(t *testing.T) {
		out, _ := exec.Command(prefix+"/usr/local/bin/blvm-sandbox", "doctor", "--json").Output()
		var rep doctorOut
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, out)
		}
		want := prefix + "/usr/local/libexec/blvm-sandbox/blvm-landlock-shim"
		if c := check(t, rep, "landlock shim"); c.Value != want || c.Verdict != "ok" {
			t.Errorf("installed doctor's shim row %+v, want %s", c, want)
		}
	})

	t.Run("an existing node config is kept", func(t *testing.T) {
		cfg := prefix + "/etc/blvm-sandbox/node.toml"
		os.WriteFile(cfg, []byte("# mine\n"), 0o600)
		if out, err := run("make", "install", "PREFIX="+prefix+"/usr/local", "SYSCONFDIR="+prefix+"/etc"); err != nil {
			t.Fatalf("make install again: %v\n%s", err, out)
		}
		if b, _ := os.ReadFile(cfg); string(b) != "# mine\n" {
			t.Errorf("make install overwrote the operator's node.toml: %q", b)
		}
	})
}
