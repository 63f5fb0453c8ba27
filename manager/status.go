package manager

import (
	"context"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/runtime"
)

// exitInfo is an exit reason as the admin API's fields; nil for none.
func exitInfo(e *runtime.ExitReason) *admin.Exit {
	if e == nil {
		return nil
	}
	return &admin.Exit{Code: e.Code, Signal: int(e.Signal), OOMKilled: e.OOMKilled, Error: e.Err}
}

// Chain is the backend's best chain, read through the hub
// (admin.ChainReporter).
func (m *Manager) Chain(ctx context.Context) (admin.Chain, error) {
	c, err := m.hub.Chain(ctx)
	if err != nil {
		return admin.Chain{}, err
	}
	return admin.Chain{Network: c.Network, Height: c.Height, TipTime: c.TipTime}, nil
}
