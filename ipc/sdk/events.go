package sdk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// EventHandler handles one event; ev.Block() and its siblings decode the
// hub's payloads. ctx is cancelled when the connection
// ends. Handlers run one at a time, in delivery order; one that blocks
// delays the events behind it (which are dropped and counted once the
// queue is full), so hand long work to a goroutine.
type EventHandler func(ctx context.Context, ev Event)

// AllEvents registers a handler for every event type.
const AllEvents = "*"

type eventDispatch struct {
	queue chan *pb.Event

	mu        sync.RWMutex
	handlers  map[string][]EventHandler
	onDropped func(ctx context.Context, n uint64)

	dropped atomic.Uint64 // by the hub plus by our own full queue
	local   atomic.Uint64 // dropped here, not yet reported to onDropped
}

func (d *eventDispatch) init(queue int) {
	d.queue = make(chan *pb.Event, queue)
	d.handlers = make(map[string][]EventHandler)
}

// OnEvent registers fn for events of type typ, or for all events with
// AllEvents. Register before Subscribe so that no event arrives unhandled.
func (m *Module) OnEvent(typ string, fn EventHandler) {
	m.events.mu.Lock()
	m.events.handlers[typ] = append(m.events.handlers[typ], fn)
	m.events.mu.Unlock()
}

// OnDropped registers fn to be told how many events were lost since the
// last delivery, whether the hub's queue or this SDK's queue was full. It
// runs in the event dispatcher, before the event that reported the loss.
func (m *Module) OnDropped(fn func(ctx context.Context, n uint64)) {
	m.events.mu.Lock()
	m.events.onDropped = fn
	m.events.mu.Unlock()
}

// Dropped is the number of events lost so far for this connection.
func (m *Module) Dropped() uint64 { return m.events.dropped.Load() }

// Subscribe asks the hub for events of the given types. The hub checks
// each type against the module's grants: on PERMISSION_DENIED nothing is
// subscribed.
func (m *Module) Subscribe(ctx context.Context, types ...string) error {
	return m.Call(ctx, "events.Subscribe", &pb.EventTypes{Types: types}, nil)
}

// Unsubscribe stops events of the given types.
func (m *Module) Unsubscribe(ctx context.Context, types ...string) error {
	return m.Call(ctx, "events.Unsubscribe", &pb.EventTypes{Types: types}, nil)
}

// Publish publishes an event in the module's own namespace. typ is either
// the full type ("<namespace>.<Name>") or just the name, which is then
// prefixed with the namespace from Welcome. The payload is opaque to the hub.
func (m *Module) Publish(ctx context.Context, typ string, payload []byte) error {
	if !strings.Contains(typ, ".") {
		ns := m.welcome.GetPublishNamespace()
		if ns == "" {
			return fmt.Errorf("events.Publish: hub granted no publish namespace")
		}
		typ = ns + "." + typ
	}
	return m.Call(ctx, "events.Publish", &pb.PublishParams{Type: typ, Payload: payload}, nil)
}

// enqueue hands an event from the reader to the dispatcher. The reader
// never blocks here: a handler waiting on a call needs the reader to
// deliver that call's response.
func (d *eventDispatch) enqueue(m *Module, ev *pb.Event) {
	select {
	case d.queue <- ev:
	default:
		d.dropped.Add(1)
		d.local.Add(1)
		m.log.Warn("event queue full, dropping event", "type", ev.GetType(), "sequence", ev.GetSequence())
	}
}

func (m *Module) dispatchLoop() {
	defer m.handlers.Done()
	d := &m.events
	for {
		select {
		case <-m.done:
			return
		case ev := <-d.queue:
			lost := ev.GetDropped()
			if lost > 0 {
				d.dropped.Add(lost)
			}
			lost += d.local.Swap(0)
			d.mu.RLock()
			hs := append(append([]EventHandler(nil), d.handlers[ev.GetType()]...), d.handlers[AllEvents]...)
			onDropped := d.onDropped
			d.mu.RUnlock()
			if lost > 0 {
				if onDropped != nil {
					m.runDropped(onDropped, lost)
				} else {
					m.log.Warn("events lost", "count", lost)
				}
			}
			for _, h := range hs {
				m.runEventHandler(h, ev)
			}
		}
	}
}

func (m *Module) runEventHandler(h EventHandler, ev *pb.Event) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("event handler panicked", "type", ev.GetType(), "panic", fmt.Sprint(r))
		}
	}()
	h(m.ctx, Event{ev})
}

func (m *Module) runDropped(fn func(context.Context, uint64), n uint64) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("dropped-events handler panicked", "panic", fmt.Sprint(r))
		}
	}()
	fn(m.ctx, n)
}
