#!/usr/bin/env bash
# The `make run` demo: three dev maintainer keys, the example modules signed
# 2-of-3, a dev node config, and the daemon on the embedded regtest chain.
# Runs until Ctrl-C, or for RUN_SECONDS, then stops cleanly.
set -euo pipefail

BIN=${BIN:-bin}
DEMO=${DEMO:-/var/lib/blvm-sandbox-demo}
RUN_SECONDS=${RUN_SECONDS:-0}
# BACKEND=btcd: the same demo against a regtest btcd the demo starts and stops.
BACKEND=${BACKEND:-devchain}
MODULES=(stratum-v2 merge-mining block-logger governance-voter)
CLI="$BIN/blvm-sandbox"
export BLVM_ADMIN_SOCKET="$DEMO/admin.sock"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "make run needs root: containers, cgroups and user namespaces" >&2
  exit 1
fi

say "fresh demo under $DEMO"
# A demo killed mid-run may leave its modules' disk images mounted: unmount
# them (deepest first) so that nothing under a mount is removed.
awk -v d="$DEMO/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r umount
rm -rf "$DEMO"
mkdir -p "$DEMO/keys" "$DEMO/modules"
chmod 711 "$DEMO"

say "three dev maintainer keys (alice, bob, carol)"
pins=""
for k in alice bob carol; do
  pub=$("$CLI" keys generate --out "$DEMO/keys/$k.key" | tail -n 1)
  echo "  $k  $pub"
  pins+="  { name = \"$k\", public_key = \"$pub\" },"$'\n'
done

say "sign the example modules 2-of-3 (alice and bob)"
for m in "${MODULES[@]}"; do
  dst="$DEMO/modules/$m"
  mkdir -p "$dst"
  cp "examples/$m/module.toml" "$dst/"
  [ -f "examples/$m/config.toml" ] && cp "examples/$m/config.toml" "$dst/"
  cp "$BIN/examples/$m" "$dst/$m"
  for k in alice bob; do
    "$CLI" sign --key "$DEMO/keys/$k.key" --name "$k" --binary "$dst/$m" --threshold 2-of-3 "$dst" >/dev/null
  done
  echo "  $m: $(grep -m1 '^hash' "$dst/module.toml")"
done

# ---- BACKEND=btcd: a local regtest btcd, started here, stopped on exit ----
backend_toml=""
node_pid="" miner_pid=""
stop_node() {
  [ -n "$miner_pid" ] && kill "$miner_pid" 2>/dev/null && wait "$miner_pid" 2>/dev/null || true
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    say "stopping btcd"
    kill -INT "$node_pid"
    for _ in $(seq 1 50); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
}
case "$BACKEND" in
devchain) ;;
btcd)
  # The binary the backend tests build (backend/btcdtest): the same version
  # and cache directory.
  BTCD_VERSION=v0.26.2
  BTCD_CACHE=${BLVM_BTCD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/blvm-sandbox/btcd-$BTCD_VERSION}
  BTCD_RPC=${BTCD_RPC:-127.0.0.1:28556}
  if [ ! -x "$BTCD_CACHE/btcd" ]; then
    say "building btcd $BTCD_VERSION into $BTCD_CACHE"
    mkdir -p "$BTCD_CACHE"
    (cd /tmp && GOBIN="$BTCD_CACHE" CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off go install "github.com/btcsuite/btcd@$BTCD_VERSION")
  fi
  say "starting a regtest btcd on $BTCD_RPC (RPC without TLS: loopback only)"
  mkdir -p "$DEMO/btcd"
  btcd_pass=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # Credentials in files (0600), never on a command line.
  (umask 077
   printf 'rpcuser=blvm\nrpcpass=%s\n' "$btcd_pass" > "$DEMO/btcd/btcd.conf"
   printf '%s\n' "$btcd_pass" > "$DEMO/btcd/rpc.pass")
  # Pdeathsig: a demo killed outright takes btcd with it.
  setpriv --pdeathsig KILL "$BTCD_CACHE/btcd" --regtest --configfile="$DEMO/btcd/btcd.conf" \
    --datadir="$DEMO/btcd/data" --logdir="$DEMO/btcd/logs" --rpclisten="$BTCD_RPC" --notls \
    --nolisten --txindex --miningaddr=mwiXySQzfKWKhNJgCSSEXuCa1VwA6FxKFx >"$DEMO/btcd/btcd.out" 2>&1 &
  node_pid=$!
  trap stop_node EXIT
  rpc() { curl -sf --max-time 5 --user "blvm:$btcd_pass" -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"$1\",\"params\":[$2]}" "http://$BTCD_RPC/"; }
  for _ in $(seq 1 150); do rpc getblockcount "" >/dev/null && break; sleep 0.2; done
  rpc getblockcount "" >/dev/null || { cat "$DEMO/btcd/btcd.out" >&2; echo "btcd did not answer on $BTCD_RPC" >&2; exit 1; }
  # btcd mines only when asked: one block every 2 s, as the dev chain would.
  (while sleep 2; do rpc generate 1 >/dev/null || true; done) &
  miner_pid=$!
  backend_toml="[backend]
kind = \"btcd\"
url = \"$BTCD_RPC\"
user = \"blvm\"
password_file = \"$DEMO/btcd/rpc.pass\"
tls_disable = true"
  ;;
*) echo "BACKEND=$BACKEND: want devchain or btcd" >&2; exit 1 ;;
esac
# ---- end BACKEND ----

say "dev node config: $DEMO/node.toml"
cat > "$DEMO/node.toml" <<TOML
[node]
version = "0.1.0"
network = "regtest"
database_backend = "redb"

[paths]
root = "$DEMO/root"
modules_dir = "$DEMO/modules"

[sandbox]
restart_delay = "500ms"
stop_grace = "3s"

[trust]
threshold = "2-of-3"
maintainers = [
$pins]

# governance_vote is tier "govern", above the default ceiling: allowed for
# this module only.
[modules.governance-voter]
allow = ["governance_vote"]

# Node settings win over the module's own config.toml.
[modules.stratum-v2]
pool_fee_percent = 1

$backend_toml
TOML
sed -n '/^\[modules/,$p' "$DEMO/node.toml"

say "starting the daemon: blvm-sandbox up"
"$CLI" up --config "$DEMO/node.toml" --block-interval 2s &
daemon=$!
stop_daemon() {
  if kill -0 "$daemon" 2>/dev/null; then
    say "stopping the daemon (modules stop in reverse dependency order)"
    kill -TERM "$daemon"
    wait "$daemon" || true
  fi
}
trap 'stop_daemon; stop_node' EXIT
trap 'exit 130' INT TERM

# Wait for every module to run.
for _ in $(seq 1 150); do
  running=$("$CLI" ps --json 2>/dev/null | grep -o '"state": *"running"' | wc -l || true)
  [ "$running" -ge "${#MODULES[@]}" ] && break
  sleep 0.2
done

sleep 6
say "blvm-sandbox ps"
"$CLI" ps

say "a module CLI command through the hub: blvm-sandbox cli block-logger recent 5"
"$CLI" cli block-logger recent 5

say "blvm-sandbox cli governance-voter status"
"$CLI" cli governance-voter status || true

say "a call the block-logger is not allowed to make, refused by the hub:"
"$CLI" logs block-logger 2>/dev/null | grep "refused as expected\|PERMISSION_DENIED" | head -3 || true

# The registry path: publish the examples to a local registry, install from it.
BIN="$BIN" DEMO="$DEMO" ./scripts/demo-registry.sh

if [ "$RUN_SECONDS" -gt 0 ]; then
  say "running for $RUN_SECONDS s more (RUN_SECONDS)"
  sleep "$RUN_SECONDS"
else
  say "running; Ctrl-C to stop"
  wait "$daemon"
fi
