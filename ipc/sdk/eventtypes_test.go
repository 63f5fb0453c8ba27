package sdk

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// Each constant is an event the catalog grants, through the capability
// its comment names; a renamed type in policies/ fails here.
func TestEventTypesMatchTheCatalog(t *testing.T) {
	cat, err := capabilities.Default()
	if err != nil {
		t.Fatal(err)
	}
	for typ, capName := range map[string]string{
		EventBlockConnected: "subscribe_events", EventBlockDisconnected: "subscribe_events", EventChainTipUpdated: "subscribe_events",
		EventMempoolTransactionAdded: "read_mempool", EventMempoolTransactionRemoved: "read_mempool",
		EventModuleLoaded: "subscribe_events", EventModuleUnloaded: "subscribe_events",
		EventProposalCreated: "governance_read", EventProposalClosed: "governance_read",
	} {
		c := cat.Capabilities[capName]
		if c == nil || !slices.Contains(c.Events, typ) {
			t.Errorf("%s: not among %s's events in the catalog", typ, capName)
		}
	}
}

func TestEventDecoders(t *testing.T) {
	payload := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	block := Event{&pb.Event{Type: EventBlockConnected, Payload: payload(&pb.BlockEvent{Hash: "00ab", Height: 7})}}
	if b, err := block.Block(); err != nil || b.GetHeight() != 7 || b.GetHash() != "00ab" {
		t.Errorf("Block() = %v, %v", b, err)
	}
	if _, err := block.Transaction(); err == nil || !strings.Contains(err.Error(), "node.BlockConnected: not a *pb.TransactionEvent event") {
		t.Errorf("Transaction() on a block event: %v", err)
	}
	tx := Event{&pb.Event{Type: EventMempoolTransactionRemoved, Payload: payload(&pb.TransactionEvent{Txid: "ff"})}}
	if x, err := tx.Transaction(); err != nil || x.GetTxid() != "ff" {
		t.Errorf("Transaction() = %v, %v", x, err)
	}
	loaded := Event{&pb.Event{Type: EventModuleLoaded, Payload: payload(&pb.ModuleLoaded{ModuleName: "a", Version: "1.0.0"})}}
	if l, err := loaded.ModuleLoaded(); err != nil || l.GetModuleName() != "a" {
		t.Errorf("ModuleLoaded() = %v, %v", l, err)
	}
	if _, err := loaded.ModuleUnloaded(); err == nil {
		t.Error("ModuleUnloaded() decoded a ModuleLoaded event")
	}
	prop := Event{&pb.Event{Type: EventProposalClosed, Payload: payload(&pb.ProposalEvent{Proposal: &pb.Proposal{Id: "p1"}})}}
	if p, err := prop.Proposal(); err != nil || p.GetProposal().GetId() != "p1" {
		t.Errorf("Proposal() = %v, %v", p, err)
	}
	bad := Event{&pb.Event{Type: EventBlockConnected, Sequence: 9, Payload: []byte{0xff, 0xff}}}
	if _, err := bad.Block(); err == nil || !strings.Contains(err.Error(), "sequence 9") {
		t.Errorf("Block() on a broken payload: %v", err)
	}
	published := Event{&pb.Event{Type: "stratum-v2.NewJob", Payload: []byte("raw")}}
	if _, err := published.Block(); err == nil {
		t.Error("Block() decoded a module-published event")
	}
}
