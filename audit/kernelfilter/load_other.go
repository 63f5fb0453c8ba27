//go:build !(cgo && seccomp)

package kernelfilter

import (
	"errors"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// Load needs libcontainer's seccomp support (cgo and the seccomp tag),
// which is what a container would load with; this build has neither.
func Load(*configs.Seccomp) (*Loaded, error) {
	return nil, errors.New("load seccomp filters: this binary was built without cgo and the seccomp tag, so without libcontainer's seccomp")
}

// ChildMain does nothing in this build.
func ChildMain() {}
