package hub

import (
	"context"
	"sync"
	"time"
)

// callCtx is the context of one request: the module's context plus the call
// timeout. It behaves like context.WithTimeout, except that its timer and
// its link to the parent start only when someone asks for Done. A backend
// that answers from memory never asks, and the request then costs no timer
// (arming one wakes the runtime's network poller: measurably slower round
// trips). Asking for Done is also the sign that the handler is about to
// wait, which onWait reports.
type callCtx struct {
	parent   context.Context
	deadline time.Time

	// onWait, if set, runs the first time someone asks for Done: the
	// handler is about to wait, so the reader hands its turn on.
	onWait func()

	mu         sync.Mutex
	done       chan struct{}
	closed     bool
	err        error
	timer      *time.Timer
	stopParent func() bool
}

func newCallCtx(parent context.Context, timeout time.Duration, onWait func()) *callCtx {
	return &callCtx{parent: parent, deadline: time.Now().Add(timeout), onWait: onWait}
}

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *callCtx) Value(key any) any { return c.parent.Value(key) }

func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	if c.done != nil {
		c.mu.Unlock()
		return c.done
	}
	c.done = make(chan struct{})
	done := c.done
	onWait := c.onWait
	c.onWait = nil
	if c.checkLocked() == nil {
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
		c.stopParent = context.AfterFunc(c.parent, func() { c.cancel(c.parent.Err()) })
	}
	c.mu.Unlock()
	if onWait != nil {
		onWait()
	}
	return done
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkLocked()
}

// checkLocked notices a cancelled parent or a passed deadline without
// waiting for a timer.
func (c *callCtx) checkLocked() error {
	if c.err == nil {
		if err := c.parent.Err(); err != nil {
			c.err = err
		} else if !time.Now().Before(c.deadline) {
			c.err = context.DeadlineExceeded
		}
	}
	if c.err != nil && c.done != nil && !c.closed {
		c.closed = true
		close(c.done)
	}
	return c.err
}

func (c *callCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	c.checkLocked()
}

// release ends the call, like the cancel func of context.WithTimeout.
func (c *callCtx) release() {
	c.cancel(context.Canceled)
	c.mu.Lock()
	t, sp := c.timer, c.stopParent
	c.onWait = nil
	c.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	if sp != nil {
		sp()
	}
}
