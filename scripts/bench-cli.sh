#!/usr/bin/env bash
# `make bench`'s CLI pair: `blvm-sandbox run` of a signed module that sends
# one frame and exits, CLI to CLI, against `crun run` of a minimal bundle
# (one static C program that exits), as a hyperfine pair; then the same run
# with --timings, stage by stage. Both print `go test -bench` lines on stdout
# for benchtable.
#
# crun 1.8 refuses this hybrid cgroup host unless the unified hierarchy is
# unmounted (ENVIRONMENT.md): hyperfine runs in a private mount namespace
# where it is, so both commands run there and neither pays a wrapper.
set -euo pipefail
BIN=${BIN:-bin}
RUNS=${RUNS:-30}
CLI=$(realpath "$BIN/blvm-sandbox")
W=$(mktemp -d /var/tmp/blvm-bench-cli.XXXXXX)
trap 'awk -v d="$W/" "index(\$2, d) == 1 { print \$2 }" /proc/self/mounts | sort -r | xargs -r umount; rm -rf "$W"' EXIT
chmod 711 "$W"

# The module: the test suite's hostile module told to exit after its hello.
mkdir -p "$W/modules/oneframe"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$W/modules/oneframe/oneframe" ./integration/hostile
cat > "$W/modules/oneframe/module.toml" <<TOML
name = "oneframe"
version = "1.0.0"
entry_point = "oneframe"
capabilities = ["read_blockchain"]
TOML
printf 'attack = "exit"\narg = "0"\n' > "$W/modules/oneframe/config.toml"
pub=$("$CLI" keys generate --out "$W/alice.key" | tail -n 1)
"$CLI" sign --key "$W/alice.key" --name alice --binary "$W/modules/oneframe/oneframe" --threshold 1-of-1 "$W/modules/oneframe" >/dev/null
cat > "$W/node.toml" <<TOML
[paths]
root = "$W/root"
modules_dir = "$W/modules"
[trust]
threshold = "1-of-1"
maintainers = [{ name = "alice", public_key = "$pub" }]
TOML

# The peer: a minimal bundle, crun's own default spec running one static
# program that exits, with crun's cgroup manager off. That favours the peer
# (it creates no cgroup at all, where run creates and limits one); it is
# also the only way crun runs here: this host lists v1 controllers in
# /proc/self/cgroup (perf_event, hugetlb, net_cls) that are mounted nowhere,
# and crun fails creating its cgroup in them.
mkdir -p "$W/bundle/rootfs"
printf 'int main(void) { return 0; }\n' > "$W/true.c"
gcc -static -O2 -o "$W/bundle/rootfs/true" "$W/true.c"
(cd "$W/bundle" && crun spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"/"\/true"/' "$W/bundle/config.json"

run="$CLI run --node-config $W/node.toml --timeout 10s $W/modules/oneframe"
peer="crun --cgroup-manager=disabled --root $W/crun-state run --bundle $W/bundle bench-true"
unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh \
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$W/pair.json" \
  -n CLIRun "$run" -n PeerCrunRunMinimal "$peer" >&2
go run ./bench/hyperfine2bench "$W/pair.json"

# Where a run's time goes: --timings, averaged per stage over RUNS runs.
# What the pair's CLIRun adds to the stages' total is the process itself:
# exec, the Go runtime's and the package initialisers' start, and the exit.
for _ in $(seq "$RUNS"); do
  $run --timings 2>&1 >/dev/null | grep '^timings:'
done | awk -v runs="$RUNS" '
  { for (i = 2; i <= NF; i++) { split($i, kv, "="); v = kv[2]; sub(/ms$/, "", v)
      sum[kv[1]] += v; if (!(kv[1] in seen)) { seen[kv[1]] = 1; order[++n] = kv[1] } } }
  END { if (NR != runs) { print "bench-cli: " NR " of " runs " runs printed timings" > "/dev/stderr"; exit 1 }
    line = sprintf("BenchmarkCLIRunStages \t%8d\t%12.0f ns/op", runs, sum["total"] / runs * 1e6)
    for (i = 1; i <= n; i++) if (order[i] != "total") line = line sprintf("\t%.2f %s-ms", sum[order[i]] / runs, order[i])
    print line }'
