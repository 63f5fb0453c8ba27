package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync/atomic"

	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

// A complete module: it loads its config, opens its own database, counts
// the blocks the node connects, and offers the operator one CLI command
// (`blvm-sandbox cli hello-blocks count`). Its module.toml needs
// capabilities = ["read_blockchain", "subscribe_events", "register_cli"].
// Log lines go to the module's stderr, which `blvm-sandbox logs
// hello-blocks` shows. sdk.Main cancels ctx on SIGTERM, so the module
// stops at once when the runtime stops it.
//
//	func main() { sdk.Main("hello-blocks", run) }
func Example() {
	run := func(ctx context.Context) error {
		cfg := struct {
			Greeting string `toml:"greeting"`
		}{Greeting: "hello"}
		// The merged config: the module's config.toml, then the operator's
		// [modules.hello-blocks].
		if err := sdk.LoadConfig("", &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		db, err := sdk.OpenDB("") // /data/db/module.db, bbolt
		if err != nil {
			return err
		}
		defer db.Close()

		m, err := sdk.Connect(ctx, sdk.Options{}) // name and socket from $BLVM_*
		if err != nil {
			return err
		}
		defer m.Close()

		var blocks atomic.Int64 // the CLI handler reads it concurrently
		m.OnEvent(sdk.EventBlockConnected, func(ctx context.Context, ev sdk.Event) {
			b, err := ev.Block()
			if err != nil {
				m.Warn("bad block event", "err", err.Error())
				return
			}
			blocks.Add(1)
			m.Info(cfg.Greeting+", block", "height", strconv.FormatUint(b.GetHeight(), 10), "hash", b.GetHash())
		})
		err = m.HandleCLI(ctx, sdk.CLISpec{Commands: []sdk.CLICommand{{Name: "count", About: "blocks seen since start"}}},
			func(ctx context.Context, cmd string, args []string) (stdout, stderr []byte, code int) {
				return fmt.Appendf(nil, "%d\n", blocks.Load()), nil, 0
			})
		if err != nil {
			return err
		}
		// Register handlers first, then subscribe: no event arrives unhandled.
		if err := m.Subscribe(ctx, sdk.EventBlockConnected); err != nil {
			return err // an *sdk.Error, PERMISSION_DENIED without subscribe_events
		}
		return m.Run(ctx) // until SIGTERM cancels ctx, or the hub goes away
	}
	_ = run // in a module: func main() { sdk.Main("hello-blocks", run) }
}
