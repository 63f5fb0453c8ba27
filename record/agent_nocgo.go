//go:build !cgo

package record

import (
	"context"
	"errors"
)

// Agent needs libseccomp (cgo); without it record mode cannot run.
type Agent struct{}

// Listen fails: the notify loop needs libseccomp, which needs cgo.
func Listen(path, container, module, shim string, dec *Decider, log *SyscallLog) (*Agent, error) {
	return nil, errors.New("record: built without cgo: the seccomp agent needs libseccomp")
}

func (a *Agent) Serve(ctx context.Context) {}
func (a *Agent) Wait() error               { return nil }
func (a *Agent) Close()                    {}

// Loadable needs libseccomp; without it nothing is known to be loadable.
func Loadable(goarch string, names []string) []string { return nil }
