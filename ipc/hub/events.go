package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// Event limits.
const (
	maxEventTypeLen     = 128
	maxTypesPerRequest  = 256
	maxSubscriptionsPer = 1024 // per connection
)

// reserved reports the namespaces that belong to the node and the hub; no
// module publishes in them, whatever its namespace is called.
func reserved(ns string) bool {
	switch ns {
	case "node", "module", "governance", "hub":
		return true
	}
	return false
}

// hubEvent is one event on its way to subscribers; each connection's writer
// frames it with that connection's sequence and drop count.
type hubEvent struct {
	typ     string
	encoded []byte // pb.Event without sequence and dropped
}

func newHubEvent(typ, source string, payload []byte) (*hubEvent, error) {
	enc, err := proto.Marshal(&pb.Event{Type: typ, TimeUnixMs: time.Now().UnixMilli(), SourceModule: source, Payload: payload})
	if err != nil {
		return nil, err
	}
	return &hubEvent{typ: typ, encoded: enc}, nil
}

// splitEventType splits "<namespace>.<Name>"; both parts are non-empty runs of
// letters, digits, '_' and '-'.
func splitEventType(t string) (ns, name string, ok bool) {
	if len(t) == 0 || len(t) > maxEventTypeLen {
		return "", "", false
	}
	dot := -1
	for i := 0; i < len(t); i++ {
		ch := t[i]
		switch {
		case ch == '.':
			if dot >= 0 {
				return "", "", false
			}
			dot = i
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '_', ch == '-':
		default:
			return "", "", false
		}
	}
	if dot <= 0 || dot == len(t)-1 {
		return "", "", false
	}
	return t[:dot], t[dot+1:], true
}

// maySubscribe decides whether the module may receive events of type t:
// node, lifecycle and governance types only when its ACL lists them; events
// that modules publish (any other namespace) whenever it may subscribe at all.
func (m *module) maySubscribe(t string) bool {
	ok := m.subscribable(t)
	if o := m.h.cfg.Observer; o != nil {
		o.Event(m.spec.Name, t, ok)
	}
	return ok
}

func (m *module) subscribable(t string) bool {
	if _, ok := m.events[t]; ok {
		return true
	}
	ns, _, ok := splitEventType(t)
	if !ok || reserved(ns) {
		return false
	}
	// Not permit: events.Subscribe itself was decided (and observed) when
	// the request was admitted.
	_, ok = m.methods["events.Subscribe"]
	return ok
}

func subscribe(_ context.Context, c *conn, params []byte) ([]byte, *callError) {
	var p pb.EventTypes
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	if len(p.Types) == 0 || len(p.Types) > maxTypesPerRequest {
		return nil, errorf(pb.ErrorCode_INVALID, "want 1 to %d event types, got %d", maxTypesPerRequest, len(p.Types))
	}
	// All or nothing: check every type before subscribing to any.
	for _, t := range p.Types {
		if _, _, ok := splitEventType(t); !ok {
			return nil, errorf(pb.ErrorCode_INVALID, "bad event type %q: want <namespace>.<Name>", t)
		}
		if !c.m.maySubscribe(t) {
			c.m.stats.denied.Add(1)
			c.m.log.info("hub: subscription denied", slog.String("type", t))
			return nil, errorf(pb.ErrorCode_PERMISSION_DENIED, "event type %q is not granted to this module", t)
		}
	}
	if e := c.h.subscribe(c, p.Types); e != nil {
		return nil, e
	}
	return nil, nil
}

func unsubscribe(_ context.Context, c *conn, params []byte) ([]byte, *callError) {
	var p pb.EventTypes
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	if len(p.Types) > maxTypesPerRequest {
		return nil, errorf(pb.ErrorCode_INVALID, "at most %d event types per request", maxTypesPerRequest)
	}
	c.h.unsubscribe(c, p.Types)
	return nil, nil
}

// publish lets a module publish "<its namespace>.<Name>", never in a
// reserved namespace: a module cannot forge node or lifecycle events.
func publish(_ context.Context, c *conn, params []byte) ([]byte, *callError) {
	var p pb.PublishParams
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	ns, _, ok := splitEventType(p.Type)
	if !ok {
		return nil, errorf(pb.ErrorCode_INVALID, "bad event type %q: want <namespace>.<Name>", p.Type)
	}
	own := c.m.spec.ACL.PublishNamespace
	if reserved(ns) || ns != own || own == "" {
		c.m.stats.denied.Add(1)
		c.m.log.warn("hub: publish refused", slog.String("type", p.Type), slog.String("namespace", own))
		return nil, errorf(pb.ErrorCode_PERMISSION_DENIED, "may publish only %q events", own+".<Name>")
	}
	if len(p.Payload) > c.h.cfg.MaxEventPayload {
		// Every subscriber's queue would hold it: the limit sits well
		// below the frame limit.
		return nil, errorf(pb.ErrorCode_INVALID, "payload is %d bytes, limit %d", len(p.Payload), c.h.cfg.MaxEventPayload)
	}
	ev, err := newHubEvent(p.Type, c.m.spec.Name, p.Payload)
	if err != nil {
		return nil, errorf(pb.ErrorCode_INTERNAL, "encode event: %v", err)
	}
	c.h.publish(ev)
	return nil, nil
}

func (h *Hub) subscribe(c *conn, types []string) *callError {
	c.pmu.Lock()
	fresh := 0
	for _, t := range types {
		if _, ok := c.subs[t]; !ok {
			fresh++
		}
	}
	if len(c.subs)+fresh > maxSubscriptionsPer {
		c.pmu.Unlock()
		return errorf(pb.ErrorCode_INVALID, "more than %d subscriptions on one connection", maxSubscriptionsPer)
	}
	for _, t := range types {
		c.subs[t] = struct{}{}
	}
	c.pmu.Unlock()

	h.subMu.Lock()
	defer h.subMu.Unlock()
	select {
	case <-c.done:
		return errorf(pb.ErrorCode_UNAVAILABLE, "connection closing")
	default:
	}
	for _, t := range types {
		set := h.subs[t]
		if set == nil {
			set = make(map[*conn]struct{})
			h.subs[t] = set
		}
		set[c] = struct{}{}
	}
	return nil
}

func (h *Hub) unsubscribe(c *conn, types []string) {
	c.pmu.Lock()
	for _, t := range types {
		delete(c.subs, t)
	}
	c.pmu.Unlock()
	h.subMu.Lock()
	defer h.subMu.Unlock()
	for _, t := range types {
		if set := h.subs[t]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(h.subs, t)
			}
		}
	}
}

// unsubscribeAll runs when a connection closes. Taking subMu after done is
// closed guarantees no later subscribe re-adds the connection.
func (h *Hub) unsubscribeAll(c *conn) {
	c.pmu.Lock()
	types := make([]string, 0, len(c.subs))
	for t := range c.subs {
		types = append(types, t)
	}
	c.pmu.Unlock()
	h.unsubscribe(c, types)
}

// publish hands ev to every connection subscribed to its type. It never
// blocks: a full queue drops the event for that connection and counts it.
func (h *Hub) publish(ev *hubEvent) {
	h.subMu.RLock()
	defer h.subMu.RUnlock()
	subs := h.subs[ev.typ]
	if len(subs) < parallelFanout {
		for c := range subs {
			c.deliver(ev)
		}
		return
	}
	// Many subscribers: each delivery is a write system call, so the writes
	// are split over two goroutines to use a second core.
	all := make([]*conn, 0, len(subs))
	for c := range subs {
		all = append(all, c)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, c := range all[len(all)/2:] {
			c.deliver(ev)
		}
	}()
	for _, c := range all[:len(all)/2] {
		c.deliver(ev)
	}
	wg.Wait()
}

// parallelFanout is the subscriber count from which publish writes on two
// goroutines.
const parallelFanout = 32

func (h *Hub) publishMessage(typ string, msg proto.Message) {
	payload, err := proto.Marshal(msg)
	if err == nil {
		var ev *hubEvent
		if ev, err = newHubEvent(typ, "", payload); err == nil {
			h.publish(ev)
			return
		}
	}
	h.log.Error("hub: encode event", "type", typ, "err", err)
}

// onNodeEvent maps a Backend event to the hub's event types. It must not
// block; publish never does.
func (h *Hub) onNodeEvent(ev NodeEvent) {
	switch ev.Kind {
	case BlockConnected:
		msg := &pb.BlockEvent{Hash: ev.Hash.String(), Height: ev.Height, Header: headerMessage(ev.Header, ev.Hash, ev.Height)}
		h.publishMessage("node.BlockConnected", msg)
		h.publishMessage("node.ChainTipUpdated", msg)
	case BlockDisconnected:
		h.publishMessage("node.BlockDisconnected",
			&pb.BlockEvent{Hash: ev.Hash.String(), Height: ev.Height, Header: headerMessage(ev.Header, ev.Hash, ev.Height)})
	case MempoolTransactionAdded:
		h.publishMessage("node.MempoolTransactionAdded", &pb.TransactionEvent{Txid: ev.Txid.String()})
	case MempoolTransactionRemoved:
		h.publishMessage("node.MempoolTransactionRemoved", &pb.TransactionEvent{Txid: ev.Txid.String()})
	case ProposalCreated, ProposalClosed:
		typ := "governance.ProposalCreated"
		if ev.Kind == ProposalClosed {
			typ = "governance.ProposalClosed"
		}
		msg := &pb.ProposalEvent{}
		if ev.Proposal != nil {
			msg.Proposal = proposalMessage(*ev.Proposal)
		}
		h.publishMessage(typ, msg)
	default:
		h.log.Warn("hub: unknown node event kind", "kind", int(ev.Kind))
	}
}

// ModuleLoaded publishes module.ModuleLoaded to every subscriber of that type,
// for every module. The runtime calls it when a module is loaded.
func (h *Hub) ModuleLoaded(id, name, version string) {
	h.publishMessage("module.ModuleLoaded", &pb.ModuleLoaded{ModuleId: id, ModuleName: name, Version: version})
}

// ModuleUnloaded publishes module.ModuleUnloaded to every subscriber of that
// type. The runtime calls it when a module is unloaded.
func (h *Hub) ModuleUnloaded(id, name string) {
	h.publishMessage("module.ModuleUnloaded", &pb.ModuleUnloaded{ModuleId: id, ModuleName: name})
}
