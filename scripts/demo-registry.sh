#!/usr/bin/env bash
# The registry part of the `make run` demo, called by scripts/demo.sh once
# the example modules are signed and the daemon is up:
#
#   a local registry (registry init), the signed examples published to it,
#   a maintainer's new release of block-logger published too, then the
#   node's side: search, info, outdated, the install plan, and the install
#   by name, which the running daemon picks up (restart into the new version).
#
# It stops its registry server when it returns, and on Ctrl-C or an error.
# Needs only the CLI and bash (no curl, no python): readiness is probed with
# bash's /dev/tcp.
set -euo pipefail

BIN=${BIN:-bin}
DEMO=${DEMO:-/var/lib/blvm-sandbox-demo}
CLI="$BIN/blvm-sandbox"
REG="$DEMO/registry"
NODE="$DEMO/node.toml"
export BLVM_ADMIN_SOCKET=${BLVM_ADMIN_SOCKET:-$DEMO/admin.sock}
MODULES=(stratum-v2 merge-mining block-logger governance-voter)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$DEMO|\$DEMO|g"; "$@"; }

server=""
stop_server() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
    echo "registry server stopped"
  fi
  server=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

say "a local module registry: blvm-sandbox registry init"
rm -rf "$REG"
run "$CLI" registry init --root-threshold 2-of-3 "$REG"

say "publish the signed example modules (the registry checks their maintainer signatures)"
for m in "${MODULES[@]}"; do
  run "$CLI" registry publish "$REG" "$DEMO/modules/$m"
done

say "a maintainer releases block-logger 0.1.1, signed 2-of-3 again, and publishes it"
rel="$DEMO/release/block-logger"
rm -rf "$DEMO/release" && mkdir -p "$rel"
cp "$DEMO/modules/block-logger/block-logger" "$rel/"
[ -f "$DEMO/modules/block-logger/config.toml" ] && cp "$DEMO/modules/block-logger/config.toml" "$rel/"
old=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$DEMO/modules/block-logger/module.toml" | head -n 1)
new="${old%.*}.$(( ${old##*.} + 1 ))"
# The manifest without its old signatures, at the new version.
sed -e '/^\[signatures\]/,$d' -e "s/^version = \"$old\"$/version = \"$new\"/" \
  "$DEMO/modules/block-logger/module.toml" >"$rel/module.toml"
for k in alice bob; do
  "$CLI" sign --key "$DEMO/keys/$k.key" --name "$k" --binary "$rel/block-logger" --threshold 2-of-3 "$rel" >/dev/null
done
run "$CLI" registry publish "$REG" "$rel"

say "serve it on loopback: blvm-sandbox registry serve"
port=""
for p in $(seq 18080 18099); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi # taken
  "$CLI" registry serve "$REG" --listen "127.0.0.1:$p" 2>"$DEMO/registry-access.log" &
  server=$!
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] && break
  stop_server
done
if [ -z "$port" ]; then
  echo "registry serve: no free port in 18080-18099" >&2
  exit 1
fi
echo "  http://127.0.0.1:$port (access log: $DEMO/registry-access.log)"

say "the node pins the registry's root: [registry] in node.toml"
sed -i '/^\[registry\]$/,$d' "$NODE"
cat >>"$NODE" <<TOML
[registry]
url = "http://127.0.0.1:$port"
root = "$REG/root.json"
TOML
sed -n '/^\[registry\]$/,$p' "$NODE"

say "the node's side: search, info, outdated"
run "$CLI" search --node-config "$NODE"
run "$CLI" info block-logger --node-config "$NODE"
run "$CLI" outdated --node-config "$NODE"

say "install block-logger by name: the plan first (--dry-run), then the install"
run "$CLI" install block-logger --node-config "$NODE" --dry-run
run "$CLI" install block-logger --node-config "$NODE" --yes

for _ in $(seq 1 100); do
  "$CLI" ps --json | tr -d ' \n' | grep -q "\"name\":\"block-logger\",\"version\":\"$new\",\"state\":\"running\"" && break
  sleep 0.1
done
say "blvm-sandbox ps: block-logger now runs $new, installed from the registry"
"$CLI" ps
