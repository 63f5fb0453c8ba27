// Command block-logger is an example blvm module: it records every block the
// node connects in its own bbolt database under the data dir, backfills the
// last few at startup, and offers the operator `recent [N]`.
//
// At startup it also tries one call its manifest does not allow
// (governance.CastVote) and logs the hub's PERMISSION_DENIED answer: a
// refusal is an answer, and the connection stays up.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

const (
	moduleName = "block-logger"
	maxRecent  = 1000
)

// Config is the module's config.toml.
type Config struct {
	Backfill int `toml:"backfill"` // blocks to load at startup
	Recent   int `toml:"recent"`   // default N for `recent`
}

func main() { sdk.Main(moduleName, run) }

func run(ctx context.Context) error {
	cfg := Config{Backfill: 6, Recent: 10}
	if err := sdk.LoadConfig("", &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	db, err := sdk.OpenDB("blocks.db") // /data/db/blocks.db, in the merged database_backend
	if err != nil {
		return err
	}
	store, err := NewStore(db)
	if err != nil {
		db.Close()
		return err
	}
	defer store.Close()

	// Its lines go to `logs block-logger` as every module's do; LogToHub
	// also puts them in the node's own log, which is how `make run` shows
	// blocks arriving in the daemon's output.
	m, err := sdk.Connect(ctx, sdk.Options{Name: moduleName, LogToHub: true})
	if err != nil {
		return err
	}
	defer m.Close()
	l := &logger{m: m, store: store}

	m.OnEvent(sdk.EventBlockConnected, func(ctx context.Context, ev sdk.Event) {
		b, err := ev.Block()
		if err != nil {
			m.Warn("bad BlockConnected payload", "err", err.Error())
			return
		}
		l.record(ctx, b.GetHash(), "event")
	})
	m.OnEvent(sdk.EventBlockDisconnected, func(ctx context.Context, ev sdk.Event) {
		b, err := ev.Block()
		if err != nil {
			m.Warn("bad BlockDisconnected payload", "err", err.Error())
			return
		}
		if removed, err := store.Disconnect(b.GetHeight(), b.GetHash()); err != nil {
			m.Error("store disconnect", "err", err.Error())
		} else if removed {
			m.Info("block disconnected", "height", u64(b.GetHeight()), "hash", b.GetHash())
		}
	})
	m.OnDropped(func(ctx context.Context, n uint64) {
		// Lost events mean missed blocks: fill the gap from the chain.
		m.Warn("events lost; backfilling", "count", u64(n))
		l.backfill(ctx, min(cfg.Backfill+int(n), maxRecent))
	})

	err = m.HandleCLI(ctx, sdk.CLISpec{
		About:    "Blocks seen by the block-logger module",
		Commands: []sdk.CLICommand{{Name: "recent", About: "list the most recent blocks", Usage: "recent [N]"}},
	}, func(ctx context.Context, _ string, args []string) ([]byte, []byte, int) {
		n, err := parseRecentArgs(args, cfg.Recent)
		if err != nil {
			return nil, []byte(err.Error() + "\nusage: recent [N]\n"), 2
		}
		recs, err := store.Recent(n)
		if err != nil {
			return nil, []byte(err.Error() + "\n"), 1
		}
		return formatRecent(recs), nil, 0
	})
	if err != nil {
		return err
	}
	// Subscribe before backfilling, so no block falls between the two.
	if err := m.Subscribe(ctx, sdk.EventBlockConnected, sdk.EventBlockDisconnected); err != nil {
		return err
	}
	l.backfill(ctx, cfg.Backfill)
	demonstrateRefusal(ctx, m)
	m.Info("running", "module_id", m.Welcome().GetModuleId(), "network", m.Welcome().GetNetwork())
	return m.Run(ctx)
}

type logger struct {
	m     *sdk.Module
	store *Store
}

// record fetches a block (for its transaction count) and stores it.
func (l *logger) record(ctx context.Context, hash, via string) {
	b, err := l.m.Block(ctx, hash)
	if err != nil {
		l.m.Warn("fetch block", "hash", hash, "err", err.Error())
		return
	}
	l.put(b, via)
}

func (l *logger) put(b *pb.Block, via string) {
	h := b.GetHeader()
	r := BlockRecord{Height: h.GetHeight(), Hash: h.GetHash(), Time: h.GetTime(), TxCount: len(b.GetTxids())}
	if err := l.store.Put(r); err != nil {
		l.m.Error("store block", "height", u64(r.Height), "err", err.Error())
		return
	}
	l.m.Info("block recorded", "height", u64(r.Height), "hash", r.Hash, "txs", strconv.Itoa(r.TxCount), "via", via)
}

// backfill loads up to n blocks below and including the tip that the store
// does not have yet.
func (l *logger) backfill(ctx context.Context, n int) {
	tip, err := l.m.ChainTip(ctx)
	if err != nil {
		l.m.Warn("backfill: chain tip", "err", err.Error())
		return
	}
	for i := 0; i < n && uint64(i) <= tip.GetHeight(); i++ {
		height := tip.GetHeight() - uint64(i)
		b, err := l.m.BlockByHeight(ctx, height)
		if err != nil {
			l.m.Warn("backfill: block", "height", u64(height), "err", err.Error())
			return
		}
		if r, ok, _ := l.store.Get(height); ok && r.Hash == b.GetHeader().GetHash() {
			continue
		}
		l.put(b, "backfill")
	}
}

// demonstrateRefusal makes one call the manifest does not grant. The hub
// must answer PERMISSION_DENIED and keep the connection.
func demonstrateRefusal(ctx context.Context, m *sdk.Module) {
	_, err := m.CastVote(ctx, "demo", "yes")
	switch sdk.CodeOf(err) {
	case pb.ErrorCode_PERMISSION_DENIED:
		m.Info("refused as expected", "method", "governance.CastVote", "answer", err.Error())
	case pb.ErrorCode_OK:
		m.Error("governance.CastVote was allowed; the hub ACL is wrong")
	default:
		m.Warn("governance.CastVote failed, but not as PERMISSION_DENIED", "err", err.Error())
	}
}

func parseRecentArgs(args []string, def int) (int, error) {
	switch len(args) {
	case 0:
		return def, nil
	case 1:
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return 0, fmt.Errorf("N must be a positive number, got %q", args[0])
		}
		return min(n, maxRecent), nil
	}
	return 0, fmt.Errorf("too many arguments")
}

func formatRecent(recs []BlockRecord) []byte {
	var buf bytes.Buffer
	if len(recs) == 0 {
		buf.WriteString("no blocks recorded yet\n")
		return buf.Bytes()
	}
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "HEIGHT\tHASH\tTIME (UTC)\tTXS")
	for _, r := range recs {
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\n", r.Height, r.Hash, time.Unix(r.Time, 0).UTC().Format(time.DateTime), r.TxCount)
	}
	w.Flush()
	return buf.Bytes()
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }
