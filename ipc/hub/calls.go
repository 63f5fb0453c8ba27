package hub

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// CallCount is how many requests for one method ended with one code.
type CallCount struct {
	Method string // a method the hub serves, "modules.Call", or "other"
	Code   string // a pb.ErrorCode name: "OK", "PERMISSION_DENIED", ...
	Count  uint64
}

// MethodOther is the method label of requests for a method the hub does
// not serve: a module picks its method names, and an exporter must not
// grow a series per name it invents.
const MethodOther = "other"

// callKey is bounded: methodLabel maps every name to one of the methods
// handlerFor knows, "modules.Call", "cli.RegisterCliSpec" or "other", and
// codes are the proto enum's.
type callKey struct {
	method string
	code   pb.ErrorCode
}

// callCounts counts answered requests by method and code.
type callCounts struct {
	mu sync.Mutex
	n  map[callKey]uint64
}

func (cc *callCounts) add(method string, code pb.ErrorCode) {
	k := callKey{methodLabel(method), code}
	cc.mu.Lock()
	if cc.n == nil {
		cc.n = make(map[callKey]uint64)
	}
	cc.n[k]++
	cc.mu.Unlock()
}

// snapshot is sorted by method, then code, so that callers print stably.
func (cc *callCounts) snapshot() []CallCount {
	cc.mu.Lock()
	out := make([]CallCount, 0, len(cc.n))
	for k, n := range cc.n {
		out = append(out, CallCount{Method: k.method, Code: codeName(k.code), Count: n})
	}
	cc.mu.Unlock()
	slices.SortFunc(out, func(a, b CallCount) int {
		if c := strings.Compare(a.Method, b.Method); c != 0 {
			return c
		}
		return strings.Compare(a.Code, b.Code)
	})
	return out
}

func methodLabel(method string) string {
	switch {
	case strings.HasPrefix(method, moduleCallPrefix):
		// The provider's name is the module's choice: one label for all.
		return strings.TrimSuffix(moduleCallPrefix, ":")
	case method == "cli.RegisterCliSpec":
		return method
	}
	if _, ok := handlerFor(method); ok {
		return method
	}
	return MethodOther
}

func codeName(code pb.ErrorCode) string {
	if n, ok := pb.ErrorCode_name[int32(code)]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", int32(code))
}

// answer responds to a request and counts it by method and code.
func (c *conn) answer(method string, id uint64, code pb.ErrorCode, msg string, result []byte) {
	c.m.stats.calls.add(method, code)
	c.respond(id, code, msg, result)
}

// ChainStatus is the backend's best chain as an exporter shows it.
type ChainStatus struct {
	Network string
	Height  uint64
	// TipTime is the tip block's header timestamp.
	TipTime time.Time
}

// Chain reads the backend's tip and its header's time, within ctx.
func (h *Hub) Chain(ctx context.Context) (ChainStatus, error) {
	hash, height, err := h.b.ChainTip(ctx)
	if err != nil {
		return ChainStatus{}, fmt.Errorf("hub: chain tip: %w", err)
	}
	hdr, _, err := h.b.BlockHeader(ctx, hash)
	if err != nil {
		return ChainStatus{}, fmt.Errorf("hub: tip header %s: %w", hash, err)
	}
	return ChainStatus{Network: h.b.Network(), Height: height, TipTime: hdr.Timestamp}, nil
}
