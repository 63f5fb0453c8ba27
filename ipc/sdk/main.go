package sdk

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main runs a module's body until SIGTERM or Ctrl-C cancels its context
// (the runtime stops a module with SIGTERM, then SIGKILL after a grace
// period), and exits with status 1, naming the module, when run fails.
//
//	func main() { sdk.Main("block-logger", run) }
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
