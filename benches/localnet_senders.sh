#!/usr/bin/env bash
# The local network under load: coin transfers through the official SDK
# (soma-sdk 0.1.15), one sender, then 24 senders at once (each its own client,
# as separate programs), against `soma-flow localnet serve` on a fresh ledger,
# with the server's and the SDK's CPU time.
#
#   benches/localnet_senders.sh     # TRANSFERS=200 (one sender), 40 each (24);
#                                   # BIN=target/debug/soma-flow
#   TMPDIR=/dev/shm benches/localnet_senders.sh   # the ledger on tmpfs
#
# Needs .venv with soma-sdk (scripts/test.sh makes it), or PYTHON set to one.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/soma-flow}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$BIN" ] || cargo build --locked
BIN=$(realpath "$BIN")
PYTHON=$(realpath "$PYTHON")
script=$(realpath benches/localnet_senders.py)
work=$(mktemp -d)
cd "$work"
"$BIN" localnet serve --port 0 --faucet-port 0 --admin-port 0 >serve.out 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  [ "$(grep -c 'http://' serve.out)" = 3 ] && break
  sleep 0.1
done
mapfile -t urls < <(grep -o 'http://[0-9.:]*' serve.out)

cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$server/stat"; }
run() { # senders transfers seed
  local before; before=$(cpu_s)
  /usr/bin/time -f 'sdk cpu %U+%S s' "$PYTHON" "$script" "${urls[@]}" "$@" 2>&1
  echo "server cpu $(awk -v a="$before" -v b="$(cpu_s)" 'BEGIN {printf "%.2f", b - a}') s"
}
echo "one sender:"
run 1 "${TRANSFERS:-200}" 1
echo "24 senders at once:"
run 24 "${EACH:-40}" 2
