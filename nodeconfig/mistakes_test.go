package nodeconfig

import (
	"reflect"
	"testing"
)

// TestConfigMistakesAreErrors: settings that would silently not apply are
// refused at their line, with where they belong.
func TestConfigMistakesAreErrors(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      []string
	}{
		{"global deny under [modules]", "[capabilities]\nmax_tier = \"participate\"\n\n[modules]\ndeny = [\"publish_events\"]\n", []string{
			`node.toml:5: modules.deny: an array is not a table: [modules] holds only [modules.<name>] tables (did you mean [capabilities] deny, which applies to every module?)`,
		}},
		{"scalar under [modules]", "[modules]\nthreshold = \"2-of-3\"\nmemory_bytes = 1024\n", []string{
			`node.toml:2: modules.threshold: a string is not a table: [modules] holds only [modules.<name>] tables (did you mean [trust] threshold?)`,
			`node.toml:3: modules.memory_bytes: an integer is not a table: [modules] holds only [modules.<name>] tables (did you mean [limits] memory_bytes?)`,
		}},
		{"allow under [modules]", "[modules]\nallow = [\"governance_vote\"]\n", []string{
			`node.toml:2: modules.allow: an array is not a table: [modules] holds only [modules.<name>] tables (allow is set per module: [modules.<name>] allow)`,
		}},
		{"array of tables", "[[modules.m]]\nenabled = true\n", []string{
			`node.toml:1: modules.m: an array of tables is not a table: [modules] holds only [modules.<name>] tables`,
		}},
		{"module tables still fine", "[modules.m]\ndeny = [\"publish_events\"]\n[modules.n.limits]\npids = 3\n[modules]\no = { enabled = false }\n", nil},
		{"landlock ABI below the scopes", "[sandbox]\nmin_landlock_abi = 5\n", []string{
			`node.toml:2: sandbox.min_landlock_abi: 5: want 6 or more: every module's policy has the abstract-unix and signal scopes, which need Landlock ABI 6, so below it no module could start`,
		}},
		{"landlock ABI 1", "[sandbox]\nmin_landlock_abi = 1\n", []string{
			`node.toml:2: sandbox.min_landlock_abi: 1: want 6 or more: every module's policy has the abstract-unix and signal scopes, which need Landlock ABI 6, so below it no module could start`,
		}},
		{"landlock ABI 6 and 7", "[sandbox]\nmin_landlock_abi = 7\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := checkProblems(t, tt.src, tt.want)
			if c != nil && tt.name == "module tables still fine" {
				if d := c.ModuleSettings("m").Deny; !reflect.DeepEqual(d, []string{"publish_events"}) {
					t.Errorf("[modules.m] deny = %v", d)
				}
				if c.ModuleSettings("n").Limits.Pids != 3 {
					t.Errorf("[modules.n.limits] pids lost")
				}
				if e := c.ModuleSettings("o").Enabled; e == nil || *e {
					t.Errorf("inline [modules] o enabled = %v", e)
				}
			}
		})
	}
}
