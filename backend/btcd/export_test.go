package btcd

import (
	"context"
	"runtime"
	"strings"
)

// KeptHeight is the height the chainwork sum is kept through (0 before
// any), read in the sum's turn.
func (d *Driver) KeptHeight(ctx context.Context) (uint64, error) {
	select {
	case d.work.turn <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-d.work.turn }()
	return d.work.height, nil
}

// HoldChainwork takes the sum's turn until release is called.
func (d *Driver) HoldChainwork() (release func()) {
	d.work.turn <- struct{}{}
	return func() { <-d.work.turn }
}

// WarmingUp reports whether any driver's chainwork warm-up goroutine runs.
func WarmingUp() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "btcd.(*Driver).warmChainwork(")
}
