//go:build !cgo

package policy

import (
	"errors"
	"io"
)

// BPF needs libseccomp, which needs cgo: this build has neither. The rest
// of the package stays pure Go so that the static shim's tests and offline
// tools build with CGO_ENABLED=0.
func (p *Policy) BPF(w io.Writer) error {
	return errors.New("bpf: this binary was built without cgo, so without libseccomp")
}
