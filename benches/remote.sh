#!/usr/bin/env bash
# Push and pull of one large artifact (1 GiB by default) through the remote store,
# against a local S3 server (moto), with wall time and peak memory; boto3's managed
# transfer (multipart, threaded: what `aws s3 cp` uses) moves the same file as the
# reference, side by side.
#
#   benches/remote.sh            # SIZE_MIB=1024; BIN=target/debug/soma-flow
#
# Needs moto[server] (scripts/test.sh installs it; boto3 comes with it).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
BIN=${BIN:-target/debug/soma-flow}
[ -x "$BIN" ] || cargo build --locked
BIN=$(realpath "$BIN")

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
  sleep 0.2
done
python3 -c "import boto3; boto3.client('s3').create_bucket(Bucket='bench')"

cat >"$work/p.yaml" <<EOF
name: remote-bench
stages:
  big:
    kind: command
    with:
      run: head -c ${SIZE_MIB}M /dev/urandom > outputs/big
      outs: [big]
EOF
"$BIN" --store "$work/a" run "$work/p.yaml" >/dev/null

measure() { # label, command...
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
    cat "$work/err"
    exit 1
  }
  read -r secs kib <"$work/time"
  python3 -c "import sys; s, k = float('$secs'), int('$kib'); print(f'| $label | {s:.1f} s | {$SIZE_MIB / s:.0f} MiB/s | {k / 1024:.0f} MiB |')"
}

echo "| ${SIZE_MIB} MiB artifact, moto on this machine | wall | throughput | peak memory |"
echo "|---|---|---|---|"
measure "soma-flow push" "$BIN" --store "$work/a" push --remote s3://bench/soma-flow
measure "soma-flow pull (a second store)" "$BIN" --store "$work/b" pull "$work/p.yaml" --remote s3://bench/soma-flow
file=$(find "$work/a/objects" -type f | head -1)
measure "boto3 upload_file (reference)" python3 -c "import boto3; boto3.client('s3').upload_file('$file', 'bench', 'ref/big')"
measure "boto3 download_file (reference)" python3 -c "import boto3; boto3.client('s3').download_file('bench', 'ref/big', '$work/ref-big')"
