package devchain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/blvm/blvm-sandbox/internal/lazyre"
	"github.com/blvm/blvm-sandbox/ipc/hub"
)

// Errors of the governance methods, for errors.Is. Each also matches
// hub.ErrInvalid, which the hub answers as INVALID; a proposal that does
// not exist is hub.ErrNotFound.
var (
	// ErrProposalNotOpen: the tip is outside the proposal's
	// [StartHeight, EndHeight] window.
	ErrProposalNotOpen = fmt.Errorf("proposal not open for voting: %w", hub.ErrInvalid)
	// ErrUnknownChoice: the choice is not one of the proposal's Choices.
	ErrUnknownChoice = fmt.Errorf("unknown choice: %w", hub.ErrInvalid)
	// ErrInvalidVoter: the voter id is empty, too long, or not UTF-8.
	ErrInvalidVoter = fmt.Errorf("invalid voter: %w", hub.ErrInvalid)
	// ErrInvalidProposal: CreateProposal was given a malformed proposal.
	ErrInvalidProposal = fmt.Errorf("invalid proposal: %w", hub.ErrInvalid)
	// ErrProposalExists: CreateProposal was given an id already in use.
	ErrProposalExists = fmt.Errorf("proposal exists: %w", hub.ErrInvalid)
)

const maxVoterLen = 256

var proposalIDPattern = lazyre.New(`^[a-z0-9][a-z0-9-]{0,63}$`)

// storedProposal is a proposal as stored; whether it is open depends on the
// tip, so it is computed, never stored.
type storedProposal struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Choices     []string `json:"choices"`
	StartHeight uint64   `json:"start_height"`
	EndHeight   uint64   `json:"end_height"`
}

func (s storedProposal) at(tip uint64) hub.Proposal {
	return hub.Proposal{
		ID:          s.ID,
		Title:       s.Title,
		Description: s.Description,
		Choices:     append([]string(nil), s.Choices...),
		StartHeight: s.StartHeight,
		EndHeight:   s.EndHeight,
		Open:        s.StartHeight <= tip && tip <= s.EndHeight,
	}
}

func (s storedProposal) hasChoice(choice string) bool {
	for _, ch := range s.Choices {
		if ch == choice {
			return true
		}
	}
	return false
}

// proposalAt reads proposal id and the tip height in one transaction.
func proposalAt(tx *bolt.Tx, id string) (storedProposal, uint64, error) {
	tip, err := readTip(tx)
	if err != nil {
		return storedProposal{}, 0, err
	}
	s, err := getProposal(tx, id)
	return s, tip.height, err
}

func getProposal(tx *bolt.Tx, id string) (storedProposal, error) {
	var s storedProposal
	v := tx.Bucket(bucketProposals).Get([]byte(id))
	if v == nil {
		return s, fmt.Errorf("devchain: proposal %q: %w", id, hub.ErrNotFound)
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return s, fmt.Errorf("devchain: proposal %q: decode: %w", id, err)
	}
	return s, nil
}

func validateProposal(p hub.Proposal) error {
	switch {
	case !proposalIDPattern().MatchString(p.ID):
		return fmt.Errorf("id %q: want 1-64 of a-z, 0-9 and '-', starting with a letter or digit", p.ID)
	case strings.TrimSpace(p.Title) == "":
		return errors.New("title is empty")
	case len(p.Choices) < 2:
		return fmt.Errorf("%d choices, want at least 2", len(p.Choices))
	case p.EndHeight < p.StartHeight:
		return fmt.Errorf("end height %d is below start height %d", p.EndHeight, p.StartHeight)
	}
	seen := make(map[string]bool, len(p.Choices))
	for _, ch := range p.Choices {
		if strings.TrimSpace(ch) == "" || !utf8.ValidString(ch) {
			return fmt.Errorf("choice %q is empty or not UTF-8", ch)
		}
		if seen[ch] {
			return fmt.Errorf("choice %q listed twice", ch)
		}
		seen[ch] = true
	}
	return nil
}

func putProposal(tx *bolt.Tx, p hub.Proposal) (storedProposal, error) {
	s := storedProposal{ID: p.ID, Title: p.Title, Description: p.Description,
		Choices: append([]string(nil), p.Choices...), StartHeight: p.StartHeight, EndHeight: p.EndHeight}
	b := tx.Bucket(bucketProposals)
	if b.Get([]byte(p.ID)) != nil {
		return s, fmt.Errorf("devchain: proposal %q: %w", p.ID, ErrProposalExists)
	}
	v, err := json.Marshal(s)
	if err != nil {
		return s, err
	}
	return s, b.Put([]byte(p.ID), v)
}

// seedProposals stores the two proposals a new chain starts with, both open
// from the current tip: a long soft-fork signalling question and a short
// one that closes after 144 blocks, so ProposalClosed is seen soon.
func (c *Chain) seedProposals(tx *bolt.Tx, p *pending) error {
	tip := p.tip.height
	seeds := []hub.Proposal{
		{
			ID:          "softfork-signal-demo",
			Title:       "Signal for the demo soft fork",
			Description: "Should this node set version bit 28 to signal readiness for the demo soft fork?",
			Choices:     []string{"yes", "no", "abstain"},
			StartHeight: tip,
			EndHeight:   tip + 2016,
		},
		{
			ID:          "devchain-block-interval",
			Title:       "Keep the dev chain's block interval",
			Description: "Should the dev chain keep mining a block every two seconds?",
			Choices:     []string{"keep", "faster", "slower"},
			StartHeight: tip,
			EndHeight:   tip + 144,
		},
	}
	for _, s := range seeds {
		stored, err := putProposal(tx, s)
		if err != nil {
			return err
		}
		prop := stored.at(tip)
		p.events = append(p.events, hub.NodeEvent{Kind: hub.ProposalCreated, Proposal: &prop})
	}
	return nil
}

// closeProposals adds ProposalClosed for every proposal whose EndHeight the
// block at height has just passed.
func (c *Chain) closeProposals(tx *bolt.Tx, p *pending, height uint64) error {
	return tx.Bucket(bucketProposals).ForEach(func(k, v []byte) error {
		var s storedProposal
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("proposal %q: decode: %w", k, err)
		}
		if s.EndHeight+1 == height {
			prop := s.at(height)
			p.events = append(p.events, hub.NodeEvent{Kind: hub.ProposalClosed, Proposal: &prop})
			c.log.Info("proposal closed", "proposal", s.ID, "height", height)
		}
		return nil
	})
}

// CreateProposal stores a new proposal and publishes ProposalCreated. The
// id is 1-64 of a-z, 0-9 and '-'; there must be at least two distinct
// choices and EndHeight >= StartHeight. Open in p is ignored: it follows
// the tip.
func (c *Chain) CreateProposal(ctx context.Context, p hub.Proposal) (hub.Proposal, error) {
	if err := c.ready(ctx); err != nil {
		return hub.Proposal{}, err
	}
	if err := validateProposal(p); err != nil {
		return hub.Proposal{}, fmt.Errorf("devchain: create proposal %q: %v: %w", p.ID, err, ErrInvalidProposal)
	}
	var out hub.Proposal
	err := c.write(func() ([]hub.NodeEvent, error) {
		err := c.db.Update(func(tx *bolt.Tx) error {
			tip, err := readTip(tx)
			if err != nil {
				return err
			}
			s, err := putProposal(tx, p)
			if err != nil {
				return err
			}
			out = s.at(tip.height)
			return nil
		})
		if err != nil {
			return nil, err
		}
		prop := out
		prop.Choices = append([]string(nil), out.Choices...)
		return []hub.NodeEvent{{Kind: hub.ProposalCreated, Proposal: &prop}}, nil
	})
	return out, err
}

// Proposals lists every proposal, ordered by id.
func (c *Chain) Proposals(ctx context.Context) ([]hub.Proposal, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	var out []hub.Proposal
	err := c.db.View(func(tx *bolt.Tx) error {
		tip, err := readTip(tx)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketProposals).ForEach(func(k, v []byte) error {
			var s storedProposal
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("proposal %q: decode: %w", k, err)
			}
			out = append(out, s.at(tip.height))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("devchain: proposals: %w", err)
	}
	return out, nil
}

// Proposal returns one proposal, or an error wrapping hub.ErrNotFound.
func (c *Chain) Proposal(ctx context.Context, id string) (hub.Proposal, error) {
	if err := c.ready(ctx); err != nil {
		return hub.Proposal{}, err
	}
	var out hub.Proposal
	err := c.db.View(func(tx *bolt.Tx) error {
		s, height, err := proposalAt(tx, id)
		if err != nil {
			return err
		}
		out = s.at(height)
		return nil
	})
	return out, err
}

func voteKey(proposalID, voter string) []byte {
	k := make([]byte, 0, len(proposalID)+1+len(voter))
	k = append(k, proposalID...)
	k = append(k, 0)
	return append(k, voter...)
}

// CastVote records voter's choice on an open proposal; a second vote by
// the same voter replaces the first. It refuses an unknown proposal
// (hub.ErrNotFound), a proposal outside its voting window
// (ErrProposalNotOpen), a choice not offered (ErrUnknownChoice) and a
// malformed voter id (ErrInvalidVoter), and returns the new results.
func (c *Chain) CastVote(ctx context.Context, voter, proposalID, choice string) (hub.Results, error) {
	if err := c.ready(ctx); err != nil {
		return hub.Results{}, err
	}
	if voter == "" || len(voter) > maxVoterLen || !utf8.ValidString(voter) {
		return hub.Results{}, fmt.Errorf("devchain: vote on %q: voter id must be 1-%d bytes of UTF-8: %w",
			proposalID, maxVoterLen, ErrInvalidVoter)
	}
	var res hub.Results
	// Under writeMu, so that the window check and the block that closes
	// the window are ordered.
	err := c.write(func() ([]hub.NodeEvent, error) {
		return nil, c.db.Update(func(tx *bolt.Tx) error {
			s, height, err := proposalAt(tx, proposalID)
			if err != nil {
				return err
			}
			switch {
			case height < s.StartHeight:
				return fmt.Errorf("devchain: vote on %q: voting opens at height %d, tip is %d: %w",
					proposalID, s.StartHeight, height, ErrProposalNotOpen)
			case height > s.EndHeight:
				return fmt.Errorf("devchain: vote on %q: voting closed after height %d, tip is %d: %w",
					proposalID, s.EndHeight, height, ErrProposalNotOpen)
			case !s.hasChoice(choice):
				return fmt.Errorf("devchain: vote on %q: choice %q is not one of %q: %w",
					proposalID, choice, s.Choices, ErrUnknownChoice)
			}
			if err := tx.Bucket(bucketVotes).Put(voteKey(proposalID, voter), []byte(choice)); err != nil {
				return err
			}
			res, err = tally(tx, s, height)
			return err
		})
	})
	return res, err
}

// Results tallies a proposal's votes; every choice appears, with zero if no
// one chose it.
func (c *Chain) Results(ctx context.Context, proposalID string) (hub.Results, error) {
	if err := c.ready(ctx); err != nil {
		return hub.Results{}, err
	}
	var res hub.Results
	err := c.db.View(func(tx *bolt.Tx) error {
		s, height, err := proposalAt(tx, proposalID)
		if err != nil {
			return err
		}
		res, err = tally(tx, s, height)
		return err
	})
	return res, err
}

func tally(tx *bolt.Tx, s storedProposal, tip uint64) (hub.Results, error) {
	res := hub.Results{ProposalID: s.ID, Tally: make(map[string]uint64, len(s.Choices)), Open: s.at(tip).Open}
	for _, ch := range s.Choices {
		res.Tally[ch] = 0
	}
	prefix := voteKey(s.ID, "")
	cur := tx.Bucket(bucketVotes).Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		res.Tally[string(v)]++
	}
	return res, nil
}
