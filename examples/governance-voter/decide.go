package main

import (
	"fmt"
	"strings"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// Config is the module's config.toml.
type Config struct {
	// DefaultChoice is voted on open proposals not listed in Votes; empty
	// abstains.
	DefaultChoice string `toml:"default_choice"`
	// Votes maps a proposal id to the choice to vote.
	Votes map[string]string `toml:"votes"`
}

// Decision is what the voter will do about one proposal. An empty Choice
// means it does not vote; Reason says why.
type Decision struct {
	Choice string
	Reason string
}

// Decide applies the config to a proposal. A configured choice must be one
// of the proposal's choices (compared without case; the proposal's spelling
// is voted), so a typo abstains instead of casting a vote the hub refuses.
func Decide(p *pb.Proposal, cfg Config) Decision {
	if !p.GetOpen() {
		return Decision{Reason: "closed"}
	}
	want, source := cfg.Votes[p.GetId()], "configured for this proposal"
	if want == "" {
		want, source = cfg.DefaultChoice, "default choice"
	}
	if want == "" {
		return Decision{Reason: "abstain: no vote configured and no default"}
	}
	for _, c := range p.GetChoices() {
		if strings.EqualFold(c, want) {
			return Decision{Choice: c, Reason: source}
		}
	}
	return Decision{Reason: fmt.Sprintf("abstain: %s %q is not one of %s", source, want, strings.Join(p.GetChoices(), ", "))}
}
