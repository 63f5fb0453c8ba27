package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/manifest"
)

// newtemplates/<lang>/<file>.tmpl are the files `new` writes, as <file>.
//
//go:embed newtemplates
var newTemplates embed.FS

// sdkModulePath is this project's Go module: a scaffold inside a checkout
// builds against it with no go.mod of its own.
const sdkModulePath = "github.com/blvm/blvm-sandbox"

func newNewCommand(stdout io.Writer) *cobra.Command {
	var lang string
	cmd := &cobra.Command{
		Use:   "new [--lang go] DIR",
		Short: "Write a new module directory that builds at once",
		Long: `new writes DIR/module.toml (the least capabilities its code needs),
DIR/main.go (a module on the Go SDK that subscribes to blocks, keeps its own
database and registers one CLI command), DIR/config.toml and DIR/README.md
with the commands to build, sign, install and watch it. The module is named
after DIR's last path element, which must follow the module-name rule.
Inside a checkout of blvm-sandbox it builds with plain 'go build'; outside,
README.md says how to point a go.mod at the SDK. docs/modules.md is the
reference.

Exit codes: 0 written; 2 bad input (a bad name, DIR exists and is not
empty, is a symlink, is another user's or writable by others, an unknown
--lang).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runNew(stdout, lang, args[0])
		},
	}
	cmd.Flags().StringVar(&lang, "lang", "go", "language of the scaffold (go)")
	return cmd
}

func runNew(stdout io.Writer, lang, dir string) error {
	if lang != "go" {
		return badInput(fmt.Errorf("new: --lang %q: only \"go\" has a scaffold; docs/modules.md says what a module in another language must do", termesc.String(lang)))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return badInput(fmt.Errorf("new: %w", err))
	}
	name := filepath.Base(abs)
	if !manifest.ValidModuleName(name) {
		return badInput(fmt.Errorf("new: %s: module name %q (the directory's last element): want lowercase letters, digits and '-', starting with a letter or digit, at most 63", termesc.String(dir), termesc.String(name)))
	}
	if err := emptyOrAbsent(abs); err != nil {
		return badInput(fmt.Errorf("new: %s: %w", termesc.String(dir), err))
	}
	data := struct{ Name, Steps string }{Name: name}
	data.Steps = newSteps(name, inSDKCheckout(filepath.Dir(abs)))

	files, err := renderScaffold(lang, data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return fmt.Errorf("new: %w", err)
	}
	if err := os.Mkdir(abs, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("new: %w", err)
	}
	// The files go in through a descriptor of DIR itself, opened without
	// following a link and checked again: a DIR that appeared, or was
	// swapped for a link, since the check above is refused, not written
	// through.
	dfd, err := unix.Open(abs, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return badInput(fmt.Errorf("new: %s: %w", termesc.String(dir), err))
	}
	d := os.NewFile(uintptr(dfd), abs)
	defer d.Close()
	if err := ownedEmptyDir(d); err != nil {
		return badInput(fmt.Errorf("new: %s: %w", termesc.String(dir), err))
	}
	for _, f := range files {
		// O_EXCL: a file that appeared meanwhile is never overwritten.
		fd, err := unix.Openat(dfd, f.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("new: %s: %w", filepath.Join(abs, f.name), err)
		}
		fh := os.NewFile(uintptr(fd), filepath.Join(abs, f.name))
		_, err = fh.Write(f.data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("new: %w", err)
		}
	}
	fmt.Fprintf(stdout, "wrote module %s in %s (module.toml, main.go, config.toml, README.md)\n\n%s", name, abs, data.Steps)
	return nil
}

// emptyOrAbsent refuses a DIR that holds anything, or is not a directory.
// An existing one must also be the caller's own and not writable by
// others, and never a symlink: a link or a directory another local user
// left there (in /tmp, say) would take the scaffold, which its author then
// signs, where that user can write or rewrite it.
func emptyOrAbsent(dir string) error {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case st.Mode()&fs.ModeSymlink != 0:
		return errors.New("is a symlink: name the directory itself")
	case !st.IsDir():
		return errors.New("exists and is not a directory")
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return ownedEmptyDir(d)
}

// ownedEmptyDir refuses the open directory d unless it is the caller's, not
// writable by others, and empty.
func ownedEmptyDir(d *os.File) error {
	st, err := d.Stat()
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return errors.New("exists and is not a directory")
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("exists and belongs to uid %d, not to you (uid %d): choose a new directory", sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("exists and is writable by others (mode %04o): choose a new directory", st.Mode().Perm())
	}
	entries, err := d.ReadDir(-1)
	switch {
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("exists and is not empty (%d entries): choose a new directory", len(entries))
	}
	return nil
}

type scaffoldFile struct {
	name string
	data []byte
}

func renderScaffold(lang string, data any) ([]scaffoldFile, error) {
	base := "newtemplates/" + lang
	entries, err := newTemplates.ReadDir(base)
	if err != nil {
		return nil, fmt.Errorf("new: templates for %s: %w", lang, err)
	}
	var out []scaffoldFile
	for _, e := range entries {
		src, err := newTemplates.ReadFile(base + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		t, err := template.New(e.Name()).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("new: template %s: %w", e.Name(), err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("new: template %s: %w", e.Name(), err)
		}
		out = append(out, scaffoldFile{name: strings.TrimSuffix(e.Name(), ".tmpl"), data: b.Bytes()})
	}
	return out, nil
}

// inSDKCheckout reports whether the nearest go.mod at or above dir is this
// project's, so that the scaffold builds with no go.mod of its own.
func inSDKCheckout(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			return goModulePath(b) == sdkModulePath
		}
		if filepath.Dir(d) == d {
			return false
		}
	}
}

// goModulePath is the module directive of a go.mod ("" if none): the
// first line whose first word is "module".
func goModulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// newSteps is the README's and the terminal's list of commands.
func newSteps(name string, inCheckout bool) string {
	var b strings.Builder
	if !inCheckout {
		fmt.Fprintf(&b, `This directory is outside a checkout of blvm-sandbox, so it needs a go.mod
that points at the SDK (the path of your checkout in place of /path/to/blvm-sandbox):

    go mod init example.com/%[1]s
    go mod edit -require %[2]s@v0.0.0 -replace %[2]s=/path/to/blvm-sandbox
    go mod tidy

`, name, sdkModulePath)
	}
	fmt.Fprintf(&b, `Build, sign and try it, from this directory (docs/modules.md explains each
step and shows the development node config /var/lib/blvm-dev/node.toml,
which pins your key):

    # static: the container has no libc and no loader
    CGO_ENABLED=0 go build -trimpath -o %[1]s .
    # once: a maintainer key; pin the public key it prints in node.toml's [trust]
    blvm-sandbox keys generate --out ~/alice.key
    # after every build or config change: pin the binary and config.toml, sign
    blvm-sandbox sign --key ~/alice.key --binary %[1]s .
    blvm-sandbox verify --node-config /var/lib/blvm-dev/node.toml .
    blvm-sandbox explain --node-config /var/lib/blvm-dev/node.toml .
    # alone, in the foreground, in its sandbox on the dev chain
    blvm-sandbox run --node-config /var/lib/blvm-dev/node.toml --root /var/lib/blvm-dev/run --timeout 30s .

Or into a running daemon of your own:

    export BLVM_ADMIN_SOCKET=/var/lib/blvm-dev/admin.sock
    blvm-sandbox up --config /var/lib/blvm-dev/node.toml 2>/var/lib/blvm-dev/up.log &
    blvm-sandbox install --node-config /var/lib/blvm-dev/node.toml .
    blvm-sandbox load %[1]s
    blvm-sandbox logs -f %[1]s
    blvm-sandbox cli %[1]s blocks
`, name)
	return b.String()
}
