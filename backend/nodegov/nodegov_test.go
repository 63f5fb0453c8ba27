package nodegov_test

import (
	"context"
	"errors"
	"testing"

	"github.com/blvm/blvm-sandbox/backend/nodegov"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

type store struct {
	fn func(hub.NodeEvent)
}

func (s *store) Proposals(context.Context) ([]hub.Proposal, error) {
	return []hub.Proposal{{ID: "p1"}}, nil
}
func (s *store) Proposal(_ context.Context, id string) (hub.Proposal, error) {
	return hub.Proposal{ID: id}, nil
}
func (s *store) CastVote(context.Context, string, string, string) (hub.Results, error) {
	return hub.Results{}, nil
}
func (s *store) Results(context.Context, string) (hub.Results, error) { return hub.Results{}, nil }
func (s *store) Subscribe(fn func(hub.NodeEvent)) func()              { s.fn = fn; return func() { s.fn = nil } }

// Only proposal events pass; without a store there are no proposals.
func TestForward(t *testing.T) {
	s := &store{}
	var got []hub.NodeEventKind
	cancel := nodegov.Forward{Store: s}.Events(func(ev hub.NodeEvent) { got = append(got, ev.Kind) })
	for _, k := range []hub.NodeEventKind{hub.BlockConnected, hub.ProposalCreated, hub.MempoolTransactionAdded, hub.ProposalClosed} {
		s.fn(hub.NodeEvent{Kind: k})
	}
	cancel()
	if len(got) != 2 || got[0] != hub.ProposalCreated || got[1] != hub.ProposalClosed || s.fn != nil {
		t.Fatalf("forwarded %v", got)
	}
	if ps, err := (nodegov.Forward{Store: s}).Proposals(context.Background()); err != nil || len(ps) != 1 {
		t.Fatalf("Proposals = %v, %v", ps, err)
	}
	var none nodegov.Forward
	none.Events(nil)()
	if ps, err := none.Proposals(context.Background()); err != nil || ps != nil {
		t.Fatalf("no store: Proposals = %v, %v", ps, err)
	}
	if _, err := none.Proposal(context.Background(), "x"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("no store: Proposal = %v", err)
	}
	if _, err := none.CastVote(context.Background(), "v", "x", "yes"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("no store: CastVote = %v", err)
	}
}
