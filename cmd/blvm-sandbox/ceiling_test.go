package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const governanceVoter = "../../examples/governance-voter"

// TestExplainAboveTheCeiling: without a node config governance_vote is
// above the default ceiling. explain still compiles and prints the whole
// policy as requested, marks the capability with what would allow it, and
// exits 1 (refused), not 2 (bad input).
func TestExplainAboveTheCeiling(t *testing.T) {
	out, errOut, code := explain(t, governanceVoter)
	if code != exitRefused {
		t.Fatalf("exit %d, want 1; stderr %s", code, errOut)
	}
	mark := `WOULD BE REFUSED: tier "govern" is above the operator ceiling "participate" (allow with [modules.governance-voter] allow = ["governance_vote"])`
	for _, want := range []string{
		"Module governance-voter 0.1.0",
		"  governance_vote  [tier govern, danger high]",
		mark,
		"    hub method  governance.CastVote",
		`module.toml:12: capabilities[1]: capability "governance_vote" would be refused: tier "govern" is above the operator ceiling "participate"`,
		"Hub access, in plain English",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	// The mark sits under the refused capability, not under another.
	if i := strings.Index(out, mark); i < 0 || !strings.HasSuffix(strings.TrimSuffix(out[:i], "    "), "on behalf of this node\n") {
		t.Errorf("the mark is not right under governance_vote")
	}
	if !strings.Contains(errOut, `governance-voter 0.1.0 would be refused: governance_vote: tier "govern" is above the operator ceiling "participate"`) {
		t.Errorf("stderr %q does not say why it would be refused", errOut)
	}

	// JSON carries the same, and the policy holds the capability's grants.
	out, _, code = explain(t, "--format", "json", governanceVoter)
	var r struct {
		Refused map[string]string `json:"refused_capabilities"`
		Policy  struct {
			Hub struct{ Methods []struct{ Name string } }
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != exitRefused {
		t.Fatalf("--format json: exit %d, %v", code, err)
	}
	if !strings.Contains(r.Refused["governance_vote"], "above the operator ceiling") {
		t.Errorf("refused_capabilities = %v", r.Refused)
	}
	var vote bool
	for _, m := range r.Policy.Hub.Methods {
		vote = vote || m.Name == "governance.CastVote"
	}
	if !vote {
		t.Errorf("the policy as requested lacks governance.CastVote")
	}
	for _, format := range []string{"oci", "bpf"} {
		if out, _, code := explain(t, "--format", format, governanceVoter); code != exitRefused || len(out) == 0 {
			t.Errorf("--format %s: exit %d, %d bytes; want the artifact and 1", format, code, len(out))
		}
	}

	// With the operator's allowance it is fine.
	if _, errOut, code := explain(t, "--node-config", filepath.Join(governanceVoter, "node-config.toml"), governanceVoter); code != 0 {
		t.Errorf("allowed by the example's node config: exit %d: %s", code, errOut)
	}
	// An operator deny is a refusal too, marked the same way.
	cfg := filepath.Join(t.TempDir(), "node.toml")
	os.WriteFile(cfg, []byte("[capabilities]\ndeny = [\"register_cli\"]\n[modules.governance-voter]\nallow = [\"governance_vote\"]\n"), 0o644)
	out, _, code = explain(t, "--node-config", cfg, governanceVoter)
	if code != exitRefused || !strings.Contains(out, "WOULD BE REFUSED: denied by the operator ([capabilities] deny) (allow with remove it from [capabilities] deny)") {
		t.Errorf("denied: exit %d:\n%s", code, out)
	}
	// Input that cannot be compiled is still bad input.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "module.toml"), []byte("name = \"probe\"\nversion = \"1.0.0\"\nentry_point = \"probe\"\ncapabilities = [\"governance_vote\", \"nope_nope\"]\n"), 0o644)
	if _, errOut, code := explain(t, dir); code != exitBadInput || !strings.Contains(errOut, "nope_nope") {
		t.Errorf("unknown capability beside a refused one: exit %d, %s", code, errOut)
	}
}

// TestExplainDiffAcrossTheCeiling: a new version that asks for a
// capability above the ceiling is a widening the load would stop: --diff
// names it and exits 1.
func TestExplainDiffAcrossTheCeiling(t *testing.T) {
	dir := t.TempDir()
	old := probeManifest(t, dir, "old.toml", `"governance_read"`)
	voting := probeManifest(t, dir, "new.toml", `"governance_read", "governance_vote"`)
	out, errOut, code := explain(t, "--diff", old, voting)
	if code != exitRefused {
		t.Fatalf("exit %d, want 1; stderr %s", code, errOut)
	}
	for _, want := range []string{
		"+ capability governance_vote",
		"+ hub method governance.CastVote",
		"The new policy crosses the operator's ceiling (1 capabilities would be refused):",
		`  capability governance_vote would be refused: tier "govern" is above the operator ceiling "participate" (allow with [modules.probe] allow = ["governance_vote"])`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--diff lacks %q:\n%s", want, out)
		}
	}
	out, _, code = explain(t, "--diff", "--format", "json", old, voting)
	var d struct {
		Wider          []string `json:"wider"`
		CrossesCeiling []string `json:"crosses_ceiling"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != exitRefused || len(d.CrossesCeiling) != 1 || len(d.Wider) == 0 {
		t.Errorf("--diff json: exit %d, %v, %+v", code, err, d)
	}
	// Both above the ceiling: nothing crosses, nothing widens.
	out, _, code = explain(t, "--diff", voting, voting)
	if code != 0 || strings.Contains(out, "crosses") {
		t.Errorf("same policy: exit %d\n%s", code, out)
	}
	// Narrowing back below the ceiling is not a widening.
	if out, _, code := explain(t, "--diff", voting, old); code != 0 || !strings.Contains(out, "- capability governance_vote") {
		t.Errorf("voting -> read only: exit %d\n%s", code, out)
	}
}
