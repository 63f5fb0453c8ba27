package sdk

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// The event types the hub publishes, and the capability that puts each in
// Welcome().Events (docs/protocol.md, §8). A test checks them against the
// capability catalog.
const (
	// BlockEvent payloads; subscribe_events.
	EventBlockConnected    = "node.BlockConnected"
	EventBlockDisconnected = "node.BlockDisconnected"
	EventChainTipUpdated   = "node.ChainTipUpdated"
	// TransactionEvent payloads; read_mempool.
	EventMempoolTransactionAdded   = "node.MempoolTransactionAdded"
	EventMempoolTransactionRemoved = "node.MempoolTransactionRemoved"
	// ModuleLoaded and ModuleUnloaded payloads; subscribe_events.
	EventModuleLoaded   = "module.ModuleLoaded"
	EventModuleUnloaded = "module.ModuleUnloaded"
	// ProposalEvent payloads; governance_read.
	EventProposalCreated = "governance.ProposalCreated"
	EventProposalClosed  = "governance.ProposalClosed"
)

// Event is a received event, as handed to an EventHandler: the wire
// message (GetType, GetPayload, GetSourceModule, GetSequence) with
// decoders for the hub's payloads. A decoder called on another type is an
// error naming both, so a handler registered for several types cannot
// misread one; a module-published event's payload is GetPayload's bytes.
type Event struct{ *pb.Event }

// Block decodes a node.BlockConnected, node.BlockDisconnected or
// node.ChainTipUpdated payload.
func (e Event) Block() (*pb.BlockEvent, error) {
	return decodeEvent(e, &pb.BlockEvent{}, EventBlockConnected, EventBlockDisconnected, EventChainTipUpdated)
}

// Transaction decodes a node.MempoolTransactionAdded or
// node.MempoolTransactionRemoved payload.
func (e Event) Transaction() (*pb.TransactionEvent, error) {
	return decodeEvent(e, &pb.TransactionEvent{}, EventMempoolTransactionAdded, EventMempoolTransactionRemoved)
}

// ModuleLoaded decodes a module.ModuleLoaded payload.
func (e Event) ModuleLoaded() (*pb.ModuleLoaded, error) {
	return decodeEvent(e, &pb.ModuleLoaded{}, EventModuleLoaded)
}

// ModuleUnloaded decodes a module.ModuleUnloaded payload.
func (e Event) ModuleUnloaded() (*pb.ModuleUnloaded, error) {
	return decodeEvent(e, &pb.ModuleUnloaded{}, EventModuleUnloaded)
}

// Proposal decodes a governance.ProposalCreated or governance.ProposalClosed
// payload.
func (e Event) Proposal() (*pb.ProposalEvent, error) {
	return decodeEvent(e, &pb.ProposalEvent{}, EventProposalCreated, EventProposalClosed)
}

func decodeEvent[T proto.Message](e Event, msg T, types ...string) (T, error) {
	typ := e.GetType()
	for _, t := range types {
		if t == typ {
			if err := proto.Unmarshal(e.GetPayload(), msg); err != nil {
				var zero T
				return zero, fmt.Errorf("event %s (sequence %d): decode %T: %w", typ, e.GetSequence(), msg, err)
			}
			return msg, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("event %s: not a %T event (that is %v)", typ, msg, types)
}
