package devchain

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

func TestSeededProposals(t *testing.T) {
	c, _ := openTest(t, Options{})
	ctx := context.Background()
	props, err := c.Proposals(ctx)
	if err != nil || len(props) != 2 {
		t.Fatalf("Proposals = %+v, %v", props, err)
	}
	for _, p := range props {
		if !p.Open || p.StartHeight != InitialBlocks || p.EndHeight <= p.StartHeight || len(p.Choices) < 2 || p.Title == "" {
			t.Errorf("seeded proposal %+v", p)
		}
	}
	p, err := c.Proposal(ctx, "softfork-signal-demo")
	if err != nil || strings.Join(p.Choices, ",") != "yes,no,abstain" {
		t.Fatalf("Proposal = %+v, %v", p, err)
	}
}

func TestVoteRules(t *testing.T) {
	c, _ := openTest(t, Options{TxPerBlock: -1})
	ctx := context.Background()
	const id = "softfork-signal-demo"

	res, err := c.CastVote(ctx, "alice", id, "yes")
	if err != nil {
		t.Fatal(err)
	}
	if res.ProposalID != id || !res.Open || res.Tally["yes"] != 1 || res.Tally["no"] != 0 || res.Tally["abstain"] != 0 {
		t.Fatalf("results after one vote: %+v", res)
	}
	if len(res.Tally) != 3 {
		t.Fatalf("tally lists %d choices, want all 3", len(res.Tally))
	}
	// A second vote by the same voter replaces the first.
	res, err = c.CastVote(ctx, "alice", id, "no")
	if err != nil || res.Tally["yes"] != 0 || res.Tally["no"] != 1 {
		t.Fatalf("after alice changed her vote: %+v, %v", res, err)
	}
	if _, err := c.CastVote(ctx, "bob", id, "no"); err != nil {
		t.Fatal(err)
	}
	// Votes on one proposal do not leak into another whose id is a prefix.
	if _, err := c.CreateProposal(ctx, hub.Proposal{ID: "softfork", Title: "t", Choices: []string{"no", "yes"},
		StartHeight: 0, EndHeight: 1000}); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Results(ctx, "softfork"); r.Tally["no"] != 0 {
		t.Fatalf("prefix proposal sees votes of %s: %+v", id, r)
	}
	if r, _ := c.Results(ctx, id); r.Tally["no"] != 2 {
		t.Fatalf("Results = %+v, want no=2", r)
	}

	tests := []struct {
		name                  string
		voter, proposal, pick string
		want                  error
		msg                   string
	}{
		{"unknown choice", "carol", id, "maybe", ErrUnknownChoice, `choice "maybe" is not one of`},
		{"empty voter", "", id, "yes", ErrInvalidVoter, "voter id"},
		{"long voter", strings.Repeat("v", 257), id, "yes", ErrInvalidVoter, "voter id"},
		{"unknown proposal", "carol", "nope", "yes", hub.ErrNotFound, `proposal "nope"`},
	}
	for _, tt := range tests {
		_, err := c.CastVote(ctx, tt.voter, tt.proposal, tt.pick)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", tt.name, err, tt.want, tt.msg)
		}
		if tt.want != hub.ErrNotFound && !errors.Is(err, hub.ErrInvalid) {
			t.Errorf("%s: %v does not match hub.ErrInvalid", tt.name, err)
		}
	}
}

func TestVotingWindow(t *testing.T) {
	c, _ := openTest(t, Options{TxPerBlock: -1})
	ctx := context.Background()
	_, tip, _ := c.ChainTip(ctx)
	var closed []hub.NodeEvent
	cancel := c.Subscribe(func(ev hub.NodeEvent) {
		if ev.Kind == hub.ProposalClosed {
			closed = append(closed, ev)
		}
	})
	defer cancel()
	if _, err := c.CreateProposal(ctx, hub.Proposal{ID: "short", Title: "Short", Choices: []string{"a", "b"},
		StartHeight: tip, EndHeight: tip + 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateProposal(ctx, hub.Proposal{ID: "later", Title: "Later", Choices: []string{"a", "b"},
		StartHeight: tip + 10, EndHeight: tip + 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CastVote(ctx, "v", "later", "a"); !errors.Is(err, ErrProposalNotOpen) ||
		!strings.Contains(err.Error(), "opens at height") {
		t.Fatalf("vote before the window: %v", err)
	}
	if _, err := c.CastVote(ctx, "v", "short", "a"); err != nil {
		t.Fatal(err)
	}
	mine(t, c, 1) // tip+1 == EndHeight: still open
	if _, err := c.CastVote(ctx, "w", "short", "b"); err != nil {
		t.Fatalf("vote at EndHeight: %v", err)
	}
	if len(closed) != 0 {
		t.Fatalf("closed early: %+v", closed)
	}
	mine(t, c, 1) // tip passes EndHeight
	if len(closed) != 1 || closed[0].Proposal == nil || closed[0].Proposal.ID != "short" || closed[0].Proposal.Open {
		t.Fatalf("ProposalClosed events %+v", closed)
	}
	_, err := c.CastVote(ctx, "x", "short", "a")
	if !errors.Is(err, ErrProposalNotOpen) || !strings.Contains(err.Error(), "closed after height") {
		t.Fatalf("vote after the window: %v", err)
	}
	res, err := c.Results(ctx, "short")
	if err != nil || res.Open || res.Tally["a"] != 1 || res.Tally["b"] != 1 {
		t.Fatalf("final results %+v, %v", res, err)
	}
	mine(t, c, 1)
	if len(closed) != 1 {
		t.Fatalf("ProposalClosed sent again: %+v", closed)
	}
}

func TestCreateProposalValidation(t *testing.T) {
	c, _ := openTest(t, Options{TxPerBlock: -1})
	ctx := context.Background()
	ok := hub.Proposal{ID: "p-1", Title: "T", Choices: []string{"a", "b"}, StartHeight: 1, EndHeight: 2}
	tests := []struct {
		name   string
		change func(*hub.Proposal)
		want   error
	}{
		{"bad id", func(p *hub.Proposal) { p.ID = "P 1" }, ErrInvalidProposal},
		{"empty id", func(p *hub.Proposal) { p.ID = "" }, ErrInvalidProposal},
		{"no title", func(p *hub.Proposal) { p.Title = " " }, ErrInvalidProposal},
		{"one choice", func(p *hub.Proposal) { p.Choices = []string{"a"} }, ErrInvalidProposal},
		{"duplicate choice", func(p *hub.Proposal) { p.Choices = []string{"a", "a"} }, ErrInvalidProposal},
		{"end before start", func(p *hub.Proposal) { p.EndHeight = 0 }, ErrInvalidProposal},
		{"taken id", func(p *hub.Proposal) { p.ID = "softfork-signal-demo" }, ErrProposalExists},
	}
	for _, tt := range tests {
		p := ok
		p.Choices = append([]string(nil), ok.Choices...)
		tt.change(&p)
		if _, err := c.CreateProposal(ctx, p); !errors.Is(err, tt.want) || !errors.Is(err, hub.ErrInvalid) {
			t.Errorf("%s: %v, want %v and hub.ErrInvalid", tt.name, err, tt.want)
		}
	}
	if p, err := c.CreateProposal(ctx, ok); err != nil || p.Open {
		t.Fatalf("valid proposal: %+v, %v (window 1-2 is long past)", p, err)
	}
}
