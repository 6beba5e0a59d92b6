#!/bin/sh
# Regenerates the local network's genesis models from genesis.yaml (a few minutes on CPU),
# then rebuild soma-flow: the files are embedded in the binary.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cargo build --quiet --manifest-path "$root/Cargo.toml"
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
flow() { "$root/target/debug/soma-flow" --store "$store" "$@"; }
flow run "$here/genesis.yaml"
for name in code prose; do
  cp "$(flow path "$here/genesis.yaml" "train-$name.model")" "$here/genesis-$name.safetensors"
  cp "$(flow path "$here/genesis.yaml" "embed-$name.embedding")/embedding.json" \
    "$here/genesis-$name.embedding.json"
  chmod 644 "$here/genesis-$name.safetensors" "$here/genesis-$name.embedding.json"
done
