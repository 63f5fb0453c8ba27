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

// run is a whole module's body, what func main() { sdk.Main("hello-blocks",
// run) } runs in its container: config, its own database, block events
// and one CLI command. Its module.toml asks for capabilities =
// ["subscribe_events", "register_cli"].
func run(ctx context.Context) error {
	cfg := struct {
		Greeting string `toml:"greeting"`
	}{Greeting: "hello"}
	if err := sdk.LoadConfig("", &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	db, err := sdk.OpenDB("") // /data/db/module.db; bbolt
	if err != nil {
		return err
	}
	defer db.Close()

	m, err := sdk.Connect(ctx, sdk.Options{}) // name and socket from $BLVM_*
	if err != nil {
		return err
	}
	defer m.Close()

	var seen atomic.Int64 // the CLI handler reads it while events arrive
	m.OnEvent(sdk.EventBlockConnected, func(ctx context.Context, ev sdk.Event) {
		b, err := ev.Block()
		if err != nil {
			m.Warn("bad block event", "err", err.Error())
			return
		}
		seen.Add(1)
		m.Info(cfg.Greeting+", block", "height", strconv.FormatUint(b.GetHeight(), 10)) // stderr: `logs NAME`
	})
	err = m.HandleCLI(ctx, sdk.CLISpec{Commands: []sdk.CLICommand{{Name: "blocks", About: "blocks seen"}}},
		func(ctx context.Context, _ string, _ []string) ([]byte, []byte, int) {
			return fmt.Appendf(nil, "seen %d blocks\n", seen.Load()), nil, 0
		})
	if err != nil {
		return err
	}
	// Handlers first, then Subscribe, so no event arrives unhandled.
	if err := m.Subscribe(ctx, sdk.EventBlockConnected); err != nil {
		return err // an *sdk.Error, PERMISSION_DENIED without subscribe_events
	}
	return m.Run(ctx) // nil once ctx is cancelled (SIGTERM under sdk.Main)
}

// A complete module, run against a stand-in node: the real hub on an
// in-memory chain, with the socket and environment the runtime gives a
// module (startExampleNode, in example_node_test.go).
func Example() {
	node := startExampleNode("hello-blocks", "subscribe_events", "register_cli")
	defer node.stop()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()

	fmt.Print(node.cli("blocks", "seen 0 blocks\n")) // `blvm-sandbox cli hello-blocks blocks`
	node.connectBlock()
	fmt.Print(node.cli("blocks", "seen 1 blocks\n"))
	cancel() // what SIGTERM does under sdk.Main
	fmt.Println("run returned", <-done)
	// Output:
	// seen 0 blocks
	// seen 1 blocks
	// run returned <nil>
}
