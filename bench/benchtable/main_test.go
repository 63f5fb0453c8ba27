package main

import (
	"strings"
	"testing"
)

func TestParseKeepsCustomMetrics(t *testing.T) {
	in := `BenchmarkHubPipelined-2   	 100	  6500 ns/op	 150000 req/s	 12 B/op
BenchmarkHubPipelined-2   	 100	  6700 ns/op	 140000 req/s	 12 B/op
BenchmarkHubPipelined-2   	 100	  6600 ns/op	 160000 req/s	 12 B/op
BenchmarkSeal-2 	 1	 400000000 ns/op	 600.00 MB/s
`
	res, order, _ := parse(strings.NewReader(in))
	if strings.Join(order, ",") != "BenchmarkHubPipelined,BenchmarkSeal" {
		t.Fatalf("order %v", order)
	}
	p := res["BenchmarkHubPipelined"]
	if median(p.nsPerOp) != 6600 || median(p.other["req/s"]) != 150000 || len(p.units) != 1 {
		t.Fatalf("pipelined %+v", p)
	}
	if median(res["BenchmarkSeal"].mbPerS) != 600 {
		t.Fatalf("seal %+v", res["BenchmarkSeal"])
	}
}

// A peer that did not run (not installed: its benchmark skipped) is named,
// so that no table is written with a hole where the comparison should be.
func TestMissingPairsNamesAbsentPeers(t *testing.T) {
	in := `BenchmarkColdStart-2   	 20	  30000000 ns/op
--- SKIP: BenchmarkPeerRunc
BenchmarkPeerCrun-2   	 20	  25000000 ns/op
`
	res, _, _ := parse(strings.NewReader(in))
	got := missingPairs(res, pairs{"BenchmarkColdStart=BenchmarkPeerCrun", "BenchmarkColdStart=BenchmarkPeerRunc", "BenchmarkRestart=BenchmarkPeerRunc"})
	if strings.Join(got, ",") != "BenchmarkPeerRunc,BenchmarkRestart" {
		t.Errorf("missing %v, want BenchmarkPeerRunc,BenchmarkRestart", got)
	}
	if got := missingPairs(res, pairs{"BenchmarkColdStart=BenchmarkPeerCrun"}); len(got) != 0 {
		t.Errorf("missing %v with both present", got)
	}
}
