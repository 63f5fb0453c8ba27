package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/manifest"
)

func TestNewRefuses(t *testing.T) {
	base := t.TempDir()
	full := filepath.Join(base, "taken")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "notes"), []byte("mine"), 0o644)
	file := filepath.Join(base, "plainfile")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"new", full}, "taken: exists and is not empty (1 entries)"},
		{[]string{"new", filepath.Join(base, "Hello")}, `module name "Hello" (the directory's last element): want lowercase`},
		{[]string{"new", filepath.Join(base, "-x")}, `module name "-x"`},
		{[]string{"new", filepath.Join(base, "under_score")}, `module name "under_score"`},
		{[]string{"new", "--lang", "c", filepath.Join(base, "cmod")}, `--lang "c": only "go"`},
		{[]string{"new", file}, "plainfile:"},
	}
	for _, tt := range tests {
		out, errOut, code := cli(t, tt.args...)
		if code != exitBadInput || !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", tt.args, code, out, errOut, tt.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(full, "notes")); string(b) != "mine" {
		t.Error("new touched the non-empty dir")
	}
	for _, d := range []string{"Hello", "cmod"} {
		if _, err := os.Stat(filepath.Join(base, d)); err == nil {
			t.Errorf("a refused new created %s", d)
		}
	}
}

// The scaffold written inside this checkout builds with plain go build,
// statically, and its manifest and config parse; an empty existing dir is
// fine. (integration/TestRootNewScaffold runs it in a daemon.)
// Another local user's link or directory at DIR must not receive the
// scaffold: the author would sign files that user can rewrite, and a link
// sends root's writes wherever it points.
func TestNewRefusesAnotherUsersDir(t *testing.T) {
	base := t.TempDir()
	elsewhere := filepath.Join(base, "elsewhere")
	os.Mkdir(elsewhere, 0o755)
	link := filepath.Join(base, "linked")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "shared")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	tests := []struct {
		dir, want string
	}{
		{link, "linked: is a symlink"},
		{open, "shared: exists and is writable by others (mode 0777)"},
	}
	if os.Geteuid() == 0 {
		foreign := filepath.Join(base, "foreign")
		os.Mkdir(foreign, 0o755)
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ dir, want string }{foreign, "foreign: exists and belongs to uid 65534, not to you (uid 0)"})
	}
	for _, tt := range tests {
		out, errOut, code := cli(t, "new", tt.dir)
		if code != exitBadInput || !strings.Contains(errOut, tt.want) || out != "" {
			t.Errorf("new %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.dir, code, out, errOut, tt.want)
		}
		target := tt.dir
		if tt.dir == link {
			target = elsewhere
		}
		if entries, _ := os.ReadDir(target); len(entries) != 0 {
			t.Errorf("new %s wrote %d entries into %s", tt.dir, len(entries), target)
		}
	}
}

func TestNewScaffoldBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the scaffold")
	}
	// Inside the checkout, so no go.mod of its own is needed.
	parent, err := os.MkdirTemp(".", "scaffold-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	dir := filepath.Join(parent, "hello-blocks")
	os.Mkdir(dir, 0o755)
	out, errOut, code := cli(t, "new", dir)
	if code != 0 {
		t.Fatalf("new: exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "go mod init") || !strings.Contains(out, "sign --key ~/alice.key --binary hello-blocks .") {
		t.Errorf("steps printed inside the checkout:\n%s", out)
	}
	readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	if !strings.Contains(string(readme), "blvm-sandbox cli hello-blocks blocks") {
		t.Errorf("README.md:\n%s", readme)
	}
	m, err := manifest.Parse(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "hello-blocks" || m.EntryPoint != "hello-blocks" || strings.Join(m.Capabilities, ",") != "subscribe_events,register_cli" {
		t.Errorf("manifest %+v", m)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", "hello-blocks", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the scaffold: %v\n%s", err, b)
	}
	vet := exec.Command("go", "vet", ".")
	vet.Dir = dir
	if b, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("go vet in the scaffold: %v\n%s", err, b)
	}
	// The same ELF check sign and install make.
	if _, errOut, code := cli(t, "explain", dir); code != 0 {
		t.Errorf("explain of the built scaffold: exit %d: %s", code, errOut)
	}
}

// Outside a checkout the steps start with the go.mod the SDK needs.
func TestNewOutsideCheckout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lonely")
	out, errOut, code := cli(t, "new", dir)
	if code != 0 {
		t.Fatalf("new: exit %d: %s", code, errOut)
	}
	const edit = "go mod edit -require github.com/blvm/blvm-sandbox@v0.0.0 -replace github.com/blvm/blvm-sandbox=/path/to/blvm-sandbox"
	if !strings.Contains(out, edit) {
		t.Fatalf("steps outside a checkout:\n%s", out)
	}
	if testing.Short() {
		return
	}
	// The printed steps, with this checkout for /path/to/blvm-sandbox, give
	// a module that builds.
	checkout, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range [][]string{
		{"go", "mod", "init", "example.com/lonely"},
		strings.Fields(strings.ReplaceAll(edit, "/path/to/blvm-sandbox", checkout)),
		{"go", "mod", "tidy"},
		{"go", "build", "-trimpath", "-o", "lonely", "."},
	} {
		cmd := exec.Command(step[0], step[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", step, err, b)
		}
	}
}

// `go doc ./ipc/sdk` shows the scaffold's main.go as the complete module:
// the package comment must carry it verbatim, so the two never drift.
func TestSDKDocShowsTheScaffold(t *testing.T) {
	files, err := renderScaffold("go", struct{ Name, Steps string }{Name: "hello-blocks"})
	if err != nil {
		t.Fatal(err)
	}
	var main string
	for _, f := range files {
		if f.name == "main.go" {
			main = string(f.data)
		}
	}
	var want strings.Builder
	for _, l := range strings.Split(strings.TrimRight(main, "\n"), "\n") {
		if l == "" {
			want.WriteString("//\n")
		} else {
			want.WriteString("//\t" + l + "\n")
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "ipc", "sdk", "doc.go"))
	if err != nil {
		t.Fatal(err)
	}
	if main == "" || !strings.Contains(string(doc), want.String()) {
		t.Errorf("ipc/sdk/doc.go does not carry the scaffold's main.go for hello-blocks; regenerate its code block from newtemplates/go/main.go.tmpl")
	}
}
