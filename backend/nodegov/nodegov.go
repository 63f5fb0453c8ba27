// Package nodegov is the governance half of a real-node backend. Bitcoin
// nodes have no governance API, so a driver for one forwards proposals and
// votes to the node-side store the daemon already keeps (the dev chain's).
package nodegov

import (
	"context"
	"fmt"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Store is the node-side store of proposals and votes.
type Store interface {
	Proposals(ctx context.Context) ([]hub.Proposal, error)
	Proposal(ctx context.Context, id string) (hub.Proposal, error)
	CastVote(ctx context.Context, voter, proposalID, choice string) (hub.Results, error)
	Results(ctx context.Context, proposalID string) (hub.Results, error)
	Subscribe(fn func(hub.NodeEvent)) (cancel func())
}

// Forward answers hub.Backend's governance methods from Store; a nil Store
// has no proposals. Embed it in a driver.
type Forward struct{ Store Store }

// Events forwards the store's proposal events to publish until cancel.
func (f Forward) Events(publish func(hub.NodeEvent)) (cancel func()) {
	if f.Store == nil {
		return func() {}
	}
	return f.Store.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind == hub.ProposalCreated || ev.Kind == hub.ProposalClosed {
			publish(ev)
		}
	})
}

func (f Forward) Proposals(ctx context.Context) ([]hub.Proposal, error) {
	if f.Store == nil {
		return nil, nil
	}
	return f.Store.Proposals(ctx)
}

func (f Forward) Proposal(ctx context.Context, id string) (hub.Proposal, error) {
	if f.Store == nil {
		return hub.Proposal{}, fmt.Errorf("proposal %q: %w", id, hub.ErrNotFound)
	}
	return f.Store.Proposal(ctx, id)
}

func (f Forward) CastVote(ctx context.Context, voter, proposalID, choice string) (hub.Results, error) {
	if f.Store == nil {
		return hub.Results{}, fmt.Errorf("proposal %q: %w", proposalID, hub.ErrNotFound)
	}
	return f.Store.CastVote(ctx, voter, proposalID, choice)
}

func (f Forward) Results(ctx context.Context, proposalID string) (hub.Results, error) {
	if f.Store == nil {
		return hub.Results{}, fmt.Errorf("proposal %q: %w", proposalID, hub.ErrNotFound)
	}
	return f.Store.Results(ctx, proposalID)
}
