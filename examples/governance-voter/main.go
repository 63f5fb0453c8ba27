// Command governance-voter is an example blvm module: it votes on the node's
// governance proposals as its config says ([votes] per proposal, or a
// default choice), re-checks when proposals are created or a block may open
// one, and offers the operator `status`.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

const moduleName = "governance-voter"

func main() { sdk.Main(moduleName, run) }

func run(ctx context.Context) error {
	var cfg Config
	if err := sdk.LoadConfig("", &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	m, err := sdk.Connect(ctx, sdk.Options{Name: moduleName})
	if err != nil {
		return err
	}
	defer m.Close()
	v := &voter{m: m, cfg: cfg, voted: map[string]string{}}

	sweep := func(ctx context.Context, _ sdk.Event) { v.sweep(ctx) }
	m.OnEvent(sdk.EventProposalCreated, sweep)
	m.OnEvent(sdk.EventBlockConnected, sweep) // a proposal opens at its start height
	err = m.HandleCLI(ctx, sdk.CLISpec{
		About:    "The governance-voter module's votes",
		Commands: []sdk.CLICommand{{Name: "status", About: "proposals, this node's decision and the tally", Usage: "status"}},
	}, func(ctx context.Context, _ string, _ []string) ([]byte, []byte, int) {
		out, err := v.status(ctx)
		if err != nil {
			return nil, []byte(err.Error() + "\n"), 1
		}
		return out, nil, 0
	})
	if err != nil {
		return err
	}
	if err := m.Subscribe(ctx, sdk.EventProposalCreated, sdk.EventBlockConnected); err != nil {
		return err
	}
	v.sweep(ctx)
	m.Info("running", "module_id", m.Welcome().GetModuleId(), "default_choice", cfg.DefaultChoice,
		"configured_votes", fmt.Sprint(len(cfg.Votes)))
	return m.Run(ctx)
}

type voter struct {
	m   *sdk.Module
	cfg Config

	mu    sync.Mutex        // one sweep at a time
	voted map[string]string // proposal id -> choice cast by this run
}

// sweep votes on every open proposal the config decides and this run has
// not voted yet. The hub keeps one vote per module per proposal, so a
// restart that votes again changes nothing.
func (v *voter) sweep(ctx context.Context) {
	v.mu.Lock()
	defer v.mu.Unlock()
	props, err := v.m.Proposals(ctx)
	if err != nil {
		v.m.Warn("list proposals", "err", err.Error())
		return
	}
	for _, p := range props {
		d := Decide(p, v.cfg)
		if d.Choice == "" || v.voted[p.GetId()] == d.Choice {
			continue
		}
		res, err := v.m.CastVote(ctx, p.GetId(), d.Choice)
		if err != nil {
			v.m.Warn("vote", "proposal", p.GetId(), "choice", d.Choice, "err", err.Error())
			continue
		}
		v.voted[p.GetId()] = d.Choice
		v.m.Info("voted", "proposal", p.GetId(), "choice", d.Choice, "why", d.Reason, "tally", formatTally(res.GetTally()))
	}
}

func (v *voter) status(ctx context.Context) ([]byte, error) {
	props, err := v.m.Proposals(ctx)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	voted := make(map[string]string, len(v.voted))
	for k, c := range v.voted {
		voted[k] = c
	}
	v.mu.Unlock()

	var buf bytes.Buffer
	if len(props) == 0 {
		buf.WriteString("no proposals\n")
		return buf.Bytes(), nil
	}
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PROPOSAL\tTITLE\tOPEN\tTHIS NODE\tTALLY")
	for _, p := range props {
		mine := "-"
		if c, ok := voted[p.GetId()]; ok {
			mine = "voted " + c
		} else if d := Decide(p, v.cfg); d.Choice == "" {
			mine = d.Reason
		}
		tally := "?"
		if res, err := v.m.Results(ctx, p.GetId()); err == nil {
			tally = formatTally(res.GetTally())
		}
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\n", p.GetId(), p.GetTitle(), p.GetOpen(), mine, tally)
	}
	w.Flush()
	return buf.Bytes(), nil
}

func formatTally(t map[string]uint64) string {
	if len(t) == 0 {
		return "no votes"
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, t[k])
	}
	return strings.Join(parts, " ")
}
