#!/usr/bin/env bash
# The real-node backend benchmarks, as `go test -bench` lines for benchtable,
# each side measured against a plain rpcclient on the same btcd in the same
# run (btcd v0.26.2 built by backend/btcdtest into its cache):
#   BenchmarkBlockEventLatency/{driver,rpcclient}_{p50,p99}: from btcd's
#     generate returning to the driver's BlockConnected / to a websocket
#     subscriber's notification, over 100 blocks; ns/op is the quantile.
#   BenchmarkBlockByHeight/{driver,rpcclient}: getblockhash + getblock
#     through the driver / through rpcclient.
#   BenchmarkGetBlockByHeightBtcd/{hub,rpcclient}: chain.GetBlockByHeight
#     from a module through the hub / direct rpcclient (TestBtcdThroughHub).
#   BenchmarkBlockEventLatencyHub/{hub,rpcclient}_{p50,p99}: from generate
#     returning to a module's node.BlockConnected on the hub's socket / to
#     the plain subscriber, over 100 blocks (TestBtcdEventLatencyThroughHub).
# COUNT runs of each (benchtable takes medians).
set -euo pipefail
COUNT=${COUNT:-5}
GO=${GO:-go}

# One measurement per process: with -count, go test runs the parent of
# these sub-benchmarks once and repeats only its sub-benchmarks, which
# report the same figures again.
for _ in $(seq "$COUNT"); do
	$GO test -run '^$' -bench '^BenchmarkBlockEventLatency$' -benchtime 1x -count 1 ./backend/btcd/
done
$GO test -run '^$' -bench '^BenchmarkBlockByHeight$' -count "$COUNT" ./backend/btcd/
# Tests, not benchmarks (they need the hub's test env): they print their
# benchmark lines on stdout, shown with -v.
$GO test -v -run '^TestBtcdThroughHub$' -count "$COUNT" ./ipc/hub/ | grep '^Benchmark'
$GO test -v -run '^TestBtcdEventLatencyThroughHub$' -count "$COUNT" ./ipc/hub/ | grep '^Benchmark'
