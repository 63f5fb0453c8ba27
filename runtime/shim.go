package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ShimName is the static Landlock shim's file name.
const ShimName = "blvm-landlock-shim"

// InitName is the container init binary's file name. It sits beside the
// shim (in a build tree's bin/ and in ShimLibexec alike): the runtime finds
// it there, so whoever names the shim has named the init too.
const InitName = "blvm-sandbox-init"

// InitBeside is the init binary that goes with shim.
func InitBeside(shim string) string { return filepath.Join(filepath.Dir(shim), InitName) }

// ShimLibexec is where `make install` puts the shim, relative to the
// directory of the blvm-sandbox binary: $(PREFIX)/bin/../libexec/blvm-sandbox.
// The Makefile's LIBEXECDIR must say the same.
const ShimLibexec = "../libexec/blvm-sandbox"

// FindShim is the one place that decides which shim the runtime uses:
// flag when set, else the shim beside the running binary (a build tree's
// bin/), else the installed one in ShimLibexec.
func FindShim(flag string) (string, error) {
	if flag != "" {
		if _, err := os.Stat(flag); err != nil {
			return "", fmt.Errorf("landlock shim: %w", err)
		}
		return flag, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("landlock shim: %w", err)
	}
	dir := filepath.Dir(exe)
	tried := []string{filepath.Join(dir, ShimName), filepath.Clean(filepath.Join(dir, ShimLibexec, ShimName))}
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("landlock shim: %w", err)
		}
	}
	return "", fmt.Errorf("landlock shim: neither %s nor %s exists (build it with make build, install it with make install, or pass --shim)", tried[0], tried[1])
}
