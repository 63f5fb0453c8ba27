package sdk_test

import (
	"context"
	"log"

	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

// A module that logs every new block's height and offers one CLI command.
func Example() {
	ctx := context.Background()
	m, err := sdk.Connect(ctx, sdk.Options{Name: "hello-blocks"}) // socket from $BLVM_SOCKET
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	m.OnEvent("node.BlockConnected", func(ctx context.Context, ev *pb.Event) {
		m.Info("new block", "type", ev.GetType())
	})
	err = m.HandleCLI(ctx, sdk.CLISpec{Commands: []sdk.CLICommand{{Name: "tip", About: "the chain tip"}}},
		func(ctx context.Context, cmd string, args []string) ([]byte, []byte, int) {
			tip, err := m.ChainTip(ctx)
			if err != nil {
				return nil, []byte(err.Error() + "\n"), 1
			}
			return []byte(tip.GetHash() + "\n"), nil, 0
		})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Subscribe(ctx, "node.BlockConnected"); err != nil {
		log.Fatal(err) // an *sdk.Error with PERMISSION_DENIED without subscribe_events
	}
	if err := m.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
