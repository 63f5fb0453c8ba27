package hub_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// decisions records every ACL decision an observer is told of.
type decisions struct {
	mu  sync.Mutex
	got []string
}

func (d *decisions) Method(module, method string, granted bool) {
	d.add(module, "method", method, granted)
}
func (d *decisions) Event(module, t string, granted bool) { d.add(module, "event", t, granted) }

func (d *decisions) add(module, kind, name string, granted bool) {
	verdict := "granted"
	if !granted {
		verdict = "denied"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, module+" "+kind+" "+name+" "+verdict)
}

func (d *decisions) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

// TestObserverSeesEveryDecision checks that the observer hears each method
// and event type once, with the ACL's verdict, including the ones refused;
// and that a method the hub does not know is no ACL decision.
func TestObserverSeesEveryDecision(t *testing.T) {
	obs := &decisions{}
	e := newEnv(t, hub.Config{Observer: obs})
	c := e.module("watcher", "read_blockchain", "subscribe_events")
	mustCall(t, c, 1, "chain.GetChainTip", nil, pb.ErrorCode_OK)
	mustCall(t, c, 2, "mempool.GetMempoolInfo", nil, pb.ErrorCode_PERMISSION_DENIED)
	mustCall(t, c, 3, "events.Subscribe", &pb.EventTypes{Types: []string{"node.BlockConnected", "node.MempoolTransactionAdded"}}, pb.ErrorCode_PERMISSION_DENIED)
	mustCall(t, c, 4, "no.SuchMethod", nil, pb.ErrorCode_INVALID)
	want := []string{
		"watcher method chain.GetChainTip granted",
		"watcher method mempool.GetMempoolInfo denied",
		"watcher method events.Subscribe granted",
		"watcher event node.BlockConnected granted",
		"watcher event node.MempoolTransactionAdded denied",
	}
	if got := obs.list(); !slices.Equal(got, want) {
		t.Errorf("observer heard\n%q\nwant\n%q", got, want)
	}
}
