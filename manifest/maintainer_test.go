package manifest

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestMaintainerNameFollowsTheModuleNameRule: a name is outside the signed
// view and printed by verify and explain, so one that could draw on a
// terminal is refused at its line, shown escaped.
func TestMaintainerNameFollowsTheModuleNameRule(t *testing.T) {
	sig := strings.Repeat("11", 64)
	for _, tt := range []struct {
		name string // TOML basic-string body
		ok   bool
	}{
		{"alice", true},
		{"bob-2", true},
		{`evil\r\u001b[2K\u001b[8mok`, false},
		{`a\nverified probe 1.0.0`, false},
		{`\u009b2J`, false},
		{`\u202eecila`, false},
		{"Alice Smith", false},
		{strings.Repeat("a", 64), false},
	} {
		src := validTOML + "\n[signatures]\nthreshold = \"1-of-1\"\nmaintainers = [\n" +
			"  { name = \"" + tt.name + "\", public_key = \"" + pubG + "\", signature = \"" + sig + "\" },\n]\n"
		_, err := ParseBytes("module.toml", []byte(src))
		if tt.ok {
			if err != nil {
				t.Errorf("%q: %v", tt.name, err)
			}
			continue
		}
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%q: err = %v, want Problems", tt.name, err)
		}
		line := strings.Count(validTOML, "\n") + 5
		want := "signatures.maintainers[0].name: "
		var found bool
		for _, p := range ps {
			if p.Field+": " == want && p.Line == line && strings.Contains(p.Message, "not a valid maintainer name") {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: problems %v, want %s at line %d", tt.name, ps, want, line)
		}
		for _, r := range err.Error() {
			if r < 0x20 && r != '\n' || r >= 0x7f && r <= 0x9f || r >= 0x202a && r <= 0x202e {
				t.Errorf("%q: the error itself holds control %U: %q", tt.name, r, err.Error())
			}
		}
		if !utf8.ValidString(err.Error()) {
			t.Errorf("%q: the error is not valid UTF-8", tt.name)
		}
	}
}
