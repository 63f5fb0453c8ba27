// Command merge-mining is an example blvm module: it fetches the job
// template from the stratum-v2 module's API (through the hub, which checks
// read_stratum), commits the configured auxiliary chains to it, and
// publishes merge-mining.CommitmentReady whenever the template moves to a
// new block. CLI: `status`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

const (
	moduleName = "merge-mining"
	provider   = "stratum-v2"
	// pollEvery also covers stratum-v2 starting after this module.
	pollEvery = 5 * time.Second
)

// Config is the module's config.toml.
type Config struct {
	AuxChains []string `toml:"aux_chains"`
}

func main() { sdk.Main(moduleName, run) }

func run(ctx context.Context) error {
	var cfg Config
	if err := sdk.LoadConfig("", &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(distinctSorted(cfg.AuxChains)) == 0 {
		return fmt.Errorf("config: aux_chains is empty")
	}
	m, err := sdk.Connect(ctx, sdk.Options{Name: moduleName})
	if err != nil {
		return err
	}
	defer m.Close()
	mm := &merger{m: m, cfg: cfg}

	m.OnEvent(sdk.EventBlockConnected, func(ctx context.Context, ev sdk.Event) {
		b, err := ev.Block()
		if err != nil {
			m.Warn("bad BlockConnected payload", "err", err.Error())
			return
		}
		// stratum-v2 refreshes on the same event; give it a moment.
		mm.updateUntil(ctx, b.GetHeight()+1, 3*time.Second)
	})
	err = m.HandleCLI(ctx, sdk.CLISpec{
		About:    "Merged-mining commitments",
		Commands: []sdk.CLICommand{{Name: "status", About: "aux chains and the latest commitment", Usage: "status"}},
	}, func(ctx context.Context, _ string, _ []string) ([]byte, []byte, int) {
		return mm.status(), nil, 0
	})
	if err != nil {
		return err
	}
	if err := m.Subscribe(ctx, sdk.EventBlockConnected); err != nil {
		return err
	}
	mm.update(ctx)
	go mm.pollLoop(ctx)
	m.Info("running", "module_id", m.Welcome().GetModuleId(), "aux_chains", strings.Join(cfg.AuxChains, ","))
	return m.Run(ctx)
}

type merger struct {
	m   *sdk.Module
	cfg Config

	updateMu  sync.Mutex // one update at a time
	mu        sync.Mutex
	last      *Commitment
	published int
	lastErr   string
}

func (mm *merger) pollLoop(ctx context.Context) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-mm.m.Done():
			return
		case <-t.C:
			mm.update(ctx)
		}
	}
}

// updateUntil updates until the template is for height or later, or the
// time is up.
func (mm *merger) updateUntil(ctx context.Context, height uint64, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		if c := mm.update(ctx); c != nil && c.Height >= height {
			return
		}
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// update fetches the template and publishes a commitment if it moved; it
// returns the latest commitment.
func (mm *merger) update(ctx context.Context) *Commitment {
	mm.updateMu.Lock()
	defer mm.updateMu.Unlock()
	c, err := mm.compute(ctx)
	if err == nil && mm.latest() != nil && mm.latest().AuxRoot == c.AuxRoot {
		mm.setErr("")
		return mm.latest()
	}
	if err == nil {
		payload, _ := json.Marshal(c)
		if err = mm.m.Publish(ctx, "CommitmentReady", payload); err != nil {
			err = fmt.Errorf("publish: %w", err)
		}
	}
	if err != nil {
		mm.setErr(err.Error())
		return mm.latest()
	}
	mm.mu.Lock()
	mm.last, mm.lastErr = &c, ""
	mm.published++
	mm.mu.Unlock()
	mm.m.Info("commitment published", "type", "merge-mining.CommitmentReady", "height", strconv.FormatUint(c.Height, 10),
		"prev_hash", c.PrevHash, "aux_root", c.AuxRoot)
	return &c
}

func (mm *merger) latest() *Commitment {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	return mm.last
}

// setErr records the latest failure, logging a persisting one only once.
func (mm *merger) setErr(msg string) {
	mm.mu.Lock()
	changed := mm.lastErr != msg
	mm.lastErr = msg
	mm.mu.Unlock()
	if changed && msg != "" {
		mm.m.Warn("no commitment", "err", msg)
	}
}

func (mm *merger) compute(ctx context.Context) (Commitment, error) {
	raw, err := mm.m.CallModule(ctx, provider, "GetTemplate", nil)
	if err != nil {
		return Commitment{}, fmt.Errorf("%s GetTemplate: %w", provider, err)
	}
	var t TemplateRef
	if err := json.Unmarshal(raw, &t); err != nil {
		return Commitment{}, fmt.Errorf("%s GetTemplate: decode: %w", provider, err)
	}
	return ComputeCommitment(mm.cfg.AuxChains, t)
}

func (mm *merger) status() []byte {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, "aux chains      %s\n", strings.Join(distinctSorted(mm.cfg.AuxChains), ", "))
	fmt.Fprintf(&b, "published       %d commitments\n", mm.published)
	if c := mm.last; c != nil {
		fmt.Fprintf(&b, "template        height %d, prev %s\n", c.Height, c.PrevHash)
		fmt.Fprintf(&b, "aux root        %s (tree of %d)\n", c.AuxRoot, c.TreeSize)
		fmt.Fprintf(&b, "coinbase        %s\n", c.CoinbaseCommitment)
	} else {
		b.WriteString("template        none yet\n")
	}
	if mm.lastErr != "" {
		fmt.Fprintf(&b, "last error      %s\n", mm.lastErr)
	}
	return b.Bytes()
}
