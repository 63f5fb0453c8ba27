package integration

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// controlIn reports the first thing in s a terminal would act on.
func controlIn(s string) string {
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f || r >= 0x80 && r <= 0x9f || r >= 0x202a && r <= 0x202e {
			return fmt.Sprintf("%U", r)
		}
	}
	return ""
}

// TestRootRunFramesModuleOutput: in run, every line the module writes is
// prefixed with its name and escaped, so it can neither draw on the
// terminal nor pass for one of the runtime's lines.
func TestRootRunFramesModuleOutput(t *testing.T) {
	requireRoot(t)
	bin := buildCLI(t)
	dir, nodeConfig, _ := signedHostile(t, bin, "forge-terminal", "")
	r := runCLI(t, bin, "run", "--node-config", nodeConfig, dir)
	if r.code != 0 {
		t.Fatalf("run: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	for _, s := range []struct{ name, out string }{{"stdout", r.stdout}, {"stderr", r.stderr}} {
		if c := controlIn(s.out); c != "" {
			t.Errorf("%s holds a control (%q):\n%q", s.name, c, s.out)
		}
	}
	// Every line on stdout is the module's; on stderr, every line with the
	// module's words carries its prefix.
	for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		if !strings.HasPrefix(line, "hostile| ") {
			t.Errorf("stdout line without the module's prefix: %q", line)
		}
	}
	for _, line := range strings.Split(r.stderr, "\n") {
		for _, word := range []string{"module verified", "all checks passed", "partial-", "no newline"} {
			if strings.Contains(line, word) && !strings.HasPrefix(line, "hostile| ") {
				t.Errorf("stderr line %q passes for the runtime's", line)
			}
		}
	}
	for _, want := range []string{
		"hostile| FAIL\\r\\x1b[2K\\x1b]0;owned\\x07ok all checks passed\n",
		"hostile| partial-line\n",
		"hostile| no newline at the end\n",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if want := "hostile| \\x1b[8mconcealed\\x1b[0m \\u009b2J\\u009d0;c1title\\u009c \\u202eelif\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
	}
}
