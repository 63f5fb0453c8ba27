#!/usr/bin/env bash
# The registry's benchmarks, as `go test -bench` lines on stdout for
# benchtable (progress on stderr):
#
#   BenchmarkRefreshNothingChanged   a refresh against a warm cache when
#       nothing was published: requests/op, 304s/op, body and wire bytes/op
#   BenchmarkBlobDownload/client     a 64 MiB blob from `registry serve` on
#   BenchmarkBlobDownload/curl       loopback, by the client and by curl, same
#   BenchmarkBlobDownload/curl-sha256-sync   server, same run (MB/s)
#   BenchmarkRegistryInstall4        `install app` by name from a local
#       registry, app with three dependencies, cold cache, against a running
#       daemon: from the command to the four modules loaded (one line a run;
#       benchtable takes the median)
#   BenchmarkRegistryInstall4Stages  where that time goes, averaged: install
#       --timings' stages, the daemon's load time within register, and the
#       process itself
#
# Needs root (the daemon). COUNT: runs of the go benchmarks; RUNS: installs.
set -euo pipefail
BIN=${BIN:-bin}
COUNT=${COUNT:-5}
RUNS=${RUNS:-5}
GOTEST=(env CGO_ENABLED=1 go test -tags seccomp)

"${GOTEST[@]}" -run '^$' -bench '^BenchmarkRefreshNothingChanged$' -count "$COUNT" ./registry/client/ | grep '^Benchmark'
"${GOTEST[@]}" -run '^$' -bench '^BenchmarkBlobDownload$' -count "$COUNT" ./registry/client/ | grep '^Benchmark'

CLI=$(realpath "$BIN/blvm-sandbox")
W=$(mktemp -d /var/tmp/blvm-bench-registry.XXXXXX)
chmod 711 "$W"
daemon="" server=""
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  awk -v d="$W/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r umount
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four modules: bench-app requires bench-lib1..3. Each is the test suite's
# hostile module told to sleep, with bytes of its own appended (an ELF
# loader ignores them) so that each downloads a blob of its own.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$W/hostile" ./integration/hostile
pub=$("$CLI" keys generate --out "$W/alice.key" | tail -n 1)
mkmod() { # name deps-toml
  local d="$W/src/$1"
  mkdir -p "$d"
  { cat "$W/hostile"; printf '%s' "$1"; } >"$d/$1"
  chmod 755 "$d/$1"
  printf 'name = "%s"\nversion = "1.0.0"\nentry_point = "%s"\ncapabilities = ["read_blockchain"]\n%s[config_schema]\nattack = ""\narg = ""\n' "$1" "$1" "$2" >"$d/module.toml"
  printf 'attack = "sleep"\narg = "1h"\n' >"$d/config.toml"
  "$CLI" sign --key "$W/alice.key" --name alice --binary "$d/$1" --threshold 1-of-1 "$d" >/dev/null
}
for l in bench-lib1 bench-lib2 bench-lib3; do mkmod "$l" ""; done
mkmod bench-app $'[dependencies]\n"bench-lib1" = "^1.0.0"\n"bench-lib2" = "^1.0.0"\n"bench-lib3" = "^1.0.0"\n'

"$CLI" registry init --root-threshold 1-of-1 "$W/reg" >/dev/null
for m in bench-lib1 bench-lib2 bench-lib3 bench-app; do "$CLI" registry publish "$W/reg" "$W/src/$m" >/dev/null; done
port=""
for p in $(seq 18100 18199); do
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
  "$CLI" registry serve "$W/reg" --listen "127.0.0.1:$p" 2>/dev/null &
  server=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { port=$p; break; }; kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  [ -n "$port" ] && break
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""
done
[ -n "$port" ] || { echo "bench-registry: no free port" >&2; exit 1; }

mkdir -p "$W/modules"
cat >"$W/node.toml" <<TOML
[paths]
root = "$W/root"
modules_dir = "$W/modules"
[trust]
threshold = "1-of-1"
maintainers = [{ name = "alice", public_key = "$pub" }]
[registry]
url = "http://127.0.0.1:$port"
root = "$W/reg/root.json"
TOML
export BLVM_ADMIN_SOCKET="$W/admin.sock"
"$CLI" up --config "$W/node.toml" --block-interval 1s >"$W/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do "$CLI" ps -q >/dev/null 2>&1 && break; sleep 0.1; done

now() { date +%s%N; }
# took_ms: the daemon's own time in `admin: load` since log line $1.
took_ms() {
  tail -n +"$1" "$W/daemon.log" | grep 'msg="admin: load"' | sed -n 's/.*took=\([0-9.]*\)\(µs\|ms\|s\).*/\1 \2/p' |
    awk '{ v = $1; if ($2 == "s") v *= 1000; else if ($2 == "µs") v /= 1000; t += v } END { printf "%.3f", t }'
}
reset() {
  if "$CLI" ps -q | grep -qx bench-lib1; then
    "$CLI" unload bench-lib1 >/dev/null
    "$CLI" unload bench-lib2 >/dev/null
    "$CLI" unload bench-lib3 >/dev/null
  fi
  for m in bench-app bench-lib1 bench-lib2 bench-lib3; do
    [ -d "$W/modules/$m" ] && "$CLI" uninstall --node-config "$W/node.toml" "$m" >/dev/null
  done
  rm -rf "$W/root/registry"
}
inst=("$CLI" install bench-app --node-config "$W/node.toml")
: >"$W/stages"
for i in $(seq "$RUNS"); do
  reset
  line=$(($(wc -l <"$W/daemon.log") + 1))
  t0=$(now); "${inst[@]}" --yes --timings >"$W/install.out" 2>"$W/install.err"; t1=$(now) # cold cache
  grep -c '^loaded ' "$W/install.out" | grep -qx 4 || { echo "bench-registry: run $i did not load four modules:" >&2; cat "$W/install.out" "$W/install.err" >&2; exit 1; }
  total=$(( t1 - t0 ))
  printf 'BenchmarkRegistryInstall4 \t%8d\t%12d ns/op\n' 1 "$total"
  # install's own stages (--timings), the daemon's share of register, and
  # the process around them (exec, Go's start, exit).
  timings=$(grep '^timings:' "$W/install.err")
  own=$(sed -n 's/.* total=\([0-9.]*\)ms.*/\1/p' <<<"$timings")
  process=$(awk -v t="$total" -v own="$own" 'BEGIN { printf "%.2f", t / 1e6 - own }')
  echo "$timings daemon-load=$(took_ms "$line")ms process=${process}ms" >>"$W/stages"
  echo "bench-registry: run $i: $((total / 1000000)) ms" >&2
done
awk -v runs="$RUNS" '
  { for (i = 2; i <= NF; i++) { split($i, kv, "="); v = kv[2]; sub(/ms$/, "", v)
      sum[kv[1]] += v; if (!(kv[1] in seen)) { seen[kv[1]] = 1; order[++n] = kv[1] } } }
  END { if (NR != runs) { print "bench-registry: " NR " of " runs " installs printed timings" > "/dev/stderr"; exit 1 }
    line = sprintf("BenchmarkRegistryInstall4Stages \t%8d\t%12.0f ns/op", runs, (sum["total"] + sum["process"]) / runs * 1e6)
    for (i = 1; i <= n; i++) if (order[i] != "total") line = line sprintf("\t%.2f %s-ms", sum[order[i]] / runs, order[i])
    print line }' "$W/stages"
