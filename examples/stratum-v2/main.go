// Command stratum-v2 is an example blvm module: it keeps a job template for
// the next block from the node's chain tip and mempool, refreshed on every
// connected block and every few seconds, and serves it to other modules
// (API method GetTemplate, JSON) and to the operator (`template`).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

const (
	moduleName = "stratum-v2"
	// refreshEvery picks up mempool changes between blocks.
	refreshEvery = 10 * time.Second
)

// Config is the module's config.toml.
type Config struct {
	PoolFeePercent float64 `toml:"pool_fee_percent"`
}

func main() { sdk.Main(moduleName, run) }

func run(ctx context.Context) error {
	var cfg Config
	if err := sdk.LoadConfig("", &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if cfg.PoolFeePercent < 0 || cfg.PoolFeePercent > 100 {
		return fmt.Errorf("pool_fee_percent %v: want 0 to 100", cfg.PoolFeePercent)
	}
	m, err := sdk.Connect(ctx, sdk.Options{Name: moduleName})
	if err != nil {
		return err
	}
	defer m.Close()
	s := &server{m: m, cfg: cfg}

	m.OnEvent(sdk.EventBlockConnected, func(ctx context.Context, _ sdk.Event) { s.refresh(ctx) })
	m.HandleAPI("GetTemplate", func(ctx context.Context, caller sdk.Caller, _ []byte) ([]byte, error) {
		t := s.current()
		if t == nil {
			return nil, &sdk.Error{Code: pb.ErrorCode_UNAVAILABLE, Message: "no template yet"}
		}
		return json.Marshal(t)
	})
	err = m.HandleCLI(ctx, sdk.CLISpec{
		About:    "Stratum V2 job templates",
		Commands: []sdk.CLICommand{{Name: "template", About: "the current job template", Usage: "template [--json]"}},
	}, func(ctx context.Context, _ string, args []string) ([]byte, []byte, int) {
		t := s.current()
		if t == nil {
			return nil, []byte("no template yet\n"), 1
		}
		if len(args) == 1 && args[0] == "--json" {
			out, _ := json.MarshalIndent(t, "", "  ")
			return append(out, '\n'), nil, 0
		}
		return []byte(formatTemplate(t)), nil, 0
	})
	if err != nil {
		return err
	}
	if err := m.Subscribe(ctx, "node.BlockConnected"); err != nil {
		return err
	}
	s.refresh(ctx)
	// Offer the API once there is something to serve.
	if err := m.RegisterAPI(ctx); err != nil {
		return err
	}
	go s.refreshLoop(ctx)
	m.Info("running", "module_id", m.Welcome().GetModuleId(), "pool_fee_percent", strconv.FormatFloat(cfg.PoolFeePercent, 'f', -1, 64))
	return m.Run(ctx)
}

type server struct {
	m   *sdk.Module
	cfg Config

	refreshMu sync.Mutex // one refresh at a time
	mu        sync.RWMutex
	tmpl      *Template
}

func (s *server) current() *Template {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tmpl
}

func (s *server) refreshLoop(ctx context.Context) {
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.m.Done():
			return
		case <-t.C:
			s.refresh(ctx)
		}
	}
}

// refresh rebuilds the template from the chain tip and the mempool.
func (s *server) refresh(ctx context.Context) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	info, err := s.m.ChainInfo(ctx)
	if err != nil {
		s.m.Warn("refresh: chain info", "err", err.Error())
		return
	}
	txids, err := s.m.MempoolTxids(ctx)
	if err != nil {
		s.m.Warn("refresh: mempool", "err", err.Error())
		return
	}
	t, err := BuildTemplate(info, txids, time.Now(), s.cfg.PoolFeePercent)
	if err != nil {
		s.m.Warn("refresh: build template", "err", err.Error())
		return
	}
	s.mu.Lock()
	old := s.tmpl
	s.tmpl = t
	s.mu.Unlock()
	if old == nil || old.PrevHash != t.PrevHash {
		s.m.Info("new template", "height", strconv.FormatUint(t.Height, 10), "prev_hash", t.PrevHash, "txs", strconv.Itoa(len(t.Txids)))
	}
}

func formatTemplate(t *Template) string {
	var b strings.Builder
	fmt.Fprintf(&b, "network        %s\n", t.Network)
	fmt.Fprintf(&b, "height         %d\n", t.Height)
	fmt.Fprintf(&b, "prev hash      %s\n", t.PrevHash)
	fmt.Fprintf(&b, "version        %#08x\n", t.Version)
	fmt.Fprintf(&b, "bits           %s\n", t.Bits)
	fmt.Fprintf(&b, "curtime        %d (%s)\n", t.CurTime, time.Unix(t.CurTime, 0).UTC().Format(time.DateTime))
	fmt.Fprintf(&b, "transactions   %d (plus the coinbase)\n", len(t.Txids))
	fmt.Fprintf(&b, "merkle branch  %d hashes\n", len(t.MerkleBranch))
	fmt.Fprintf(&b, "pool fee       %v%%\n", t.PoolFeePercent)
	fmt.Fprintf(&b, "updated        %s\n", time.Unix(t.UpdatedUnix, 0).UTC().Format(time.DateTime))
	return b.String()
}
