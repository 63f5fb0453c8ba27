#!/usr/bin/env bash
# The `make run` demo: three dev maintainer keys, the example modules signed
# 2-of-3, a dev node config, and the daemon on the embedded regtest chain.
# Runs until Ctrl-C, or for RUN_SECONDS, then stops cleanly.
set -euo pipefail

BIN=${BIN:-bin}
DEMO=${DEMO:-/var/lib/blvm-sandbox-demo}
RUN_SECONDS=${RUN_SECONDS:-0}
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
trap stop_daemon EXIT
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

if [ "$RUN_SECONDS" -gt 0 ]; then
  say "running for $RUN_SECONDS s more (RUN_SECONDS)"
  sleep "$RUN_SECONDS"
else
  say "running; Ctrl-C to stop"
  wait "$daemon"
fi
