package devchain

import (
	"sort"
	"sync/atomic"

	"github.com/blvm/blvm-sandbox/ipc/hub"
)

type subscription struct {
	fn        func(hub.NodeEvent)
	cancelled atomic.Bool
}

// Subscribe calls fn for every node event, in the order the chain produced
// them, until cancel is called:
//   - a mined block: BlockConnected, then MempoolTransactionRemoved for each
//     transaction it confirmed, then ProposalClosed for each proposal whose
//     EndHeight it passed, then MempoolTransactionAdded for each new wallet
//     transaction;
//   - InvalidateTip: BlockDisconnected, then MempoolTransactionRemoved for
//     transactions that became unspendable, then MempoolTransactionAdded for
//     the block's transactions returned to the mempool;
//   - CreateProposal: ProposalCreated.
//
// fn runs on the goroutine that made the change, with no lock of the chain
// held, so it may call every read method and CastVote. It must not block,
// and must not call MineBlock, CreateProposal or InvalidateTip: those wait
// for the delivery fn is part of to finish. A panic in fn is logged and
// does not reach the chain. After cancel returns, fn is not called again,
// except for a call already in progress.
func (c *Chain) Subscribe(fn func(hub.NodeEvent)) (cancel func()) {
	s := &subscription{fn: fn}
	c.subMu.Lock()
	id := c.nextSub
	c.nextSub++
	c.subs[id] = s
	c.subMu.Unlock()
	return func() {
		s.cancelled.Store(true)
		c.subMu.Lock()
		delete(c.subs, id)
		c.subMu.Unlock()
	}
}

// write runs one writer step under writeMu and then delivers the events it
// returns. emitMu is taken before writeMu is released, so deliveries happen
// in the order the changes did, while fn runs without writeMu held.
func (c *Chain) write(step func() ([]hub.NodeEvent, error)) error {
	c.writeMu.Lock()
	if c.closed.Load() {
		c.writeMu.Unlock()
		return ErrClosed
	}
	events, err := step()
	if len(events) == 0 {
		c.writeMu.Unlock()
		return err
	}
	c.emitMu.Lock()
	c.writeMu.Unlock()
	defer c.emitMu.Unlock()
	c.deliver(events)
	return err
}

func (c *Chain) deliver(events []hub.NodeEvent) {
	c.subMu.Lock()
	ids := make([]uint64, 0, len(c.subs))
	for id := range c.subs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	subs := make([]*subscription, len(ids))
	for i, id := range ids {
		subs[i] = c.subs[id]
	}
	c.subMu.Unlock()
	for _, ev := range events {
		for _, s := range subs {
			if !s.cancelled.Load() {
				c.call(s, ev)
			}
		}
	}
}

func (c *Chain) call(s *subscription, ev hub.NodeEvent) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("event subscriber panicked", "event", ev.Kind, "panic", r)
		}
	}()
	s.fn(ev)
}
