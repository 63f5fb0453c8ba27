package hub

import "time"

// A reader answers a request inline when nothing else is waiting, and hands
// its read turn on when the handler waits on its context. A handler that
// blocks without looking at its context would hold up the next request; the
// watchdog passes the turn on for it after stallAfter.
const (
	watchEvery = time.Millisecond
	stallAfter = time.Millisecond
	// idleTicks is how many quiet ticks the watchdog waits before it stops.
	idleTicks = 1000
)

// watch makes sure the watchdog runs. It costs one atomic load when it does.
func (h *Hub) watch() {
	if h.watching.Load() || !h.watching.CompareAndSwap(false, true) {
		return
	}
	go h.watchdog()
}

func (h *Hub) watchdog() {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	quiet := 0
	for {
		select {
		case <-t.C:
		case <-h.stop:
			h.watching.Store(false)
			return
		}
		if h.sweep() {
			quiet = 0
			continue
		}
		if quiet++; quiet < idleTicks {
			continue
		}
		// Stop, unless a reader started inline after the last sweep and saw
		// the watchdog still running.
		h.watching.Store(false)
		if !h.sweep() || !h.watching.CompareAndSwap(false, true) {
			return
		}
		quiet = 0
	}
}

// sweep passes the read turn on for every reader whose inline request has
// run longer than stallAfter, and reports whether any reader is inline.
func (h *Hub) sweep() bool {
	now := time.Now().UnixNano()
	busy := false
	h.mu.Lock()
	mods := make([]*module, 0, len(h.modules))
	for _, m := range h.modules {
		mods = append(mods, m)
	}
	h.mu.Unlock()
	for _, m := range mods {
		m.mu.Lock()
		for c := range m.conns {
			since := c.inlineSince.Load()
			if since == 0 {
				continue
			}
			busy = true
			if now-since > int64(stallAfter) {
				c.yieldTurn()
			}
		}
		m.mu.Unlock()
	}
	return busy
}
