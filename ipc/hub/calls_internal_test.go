package hub

import (
	"testing"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

func TestMethodLabelIsBounded(t *testing.T) {
	for in, want := range map[string]string{
		"chain.GetChainTip":      "chain.GetChainTip",
		"modules.Call:lightning": "modules.Call",
		"modules.Call:x":         "modules.Call",
		"cli.RegisterCliSpec":    "cli.RegisterCliSpec",
		"chain.GetChainTipX":     MethodOther,
		"":                       MethodOther,
		"\x1b[2J":                MethodOther,
	} {
		if got := methodLabel(in); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCallCountsSnapshot(t *testing.T) {
	var cc callCounts
	cc.add("chain.GetChainTip", pb.ErrorCode_OK)
	cc.add("chain.GetChainTip", pb.ErrorCode_OK)
	cc.add("made.Up1", pb.ErrorCode_INVALID)
	cc.add("made.Up2", pb.ErrorCode_INVALID)
	cc.add("chain.GetChainTip", pb.ErrorCode(99))
	got := cc.snapshot()
	want := []CallCount{
		{"chain.GetChainTip", "CODE_99", 1},
		{"chain.GetChainTip", "OK", 2},
		{MethodOther, "INVALID", 2},
	}
	if len(got) != len(want) {
		t.Fatalf("snapshot = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("snapshot[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}
