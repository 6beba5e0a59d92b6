#!/usr/bin/env bash
# README's v1-small rows of "Does the main job win?". The local network offers genesis
# competitors only at v1-tiny, so this makes a v1-small local network in a store of its
# own and gives it two v1-small competitors: `train.yaml` trains, commits and reveals
# one under each of two keys, with two seeds. Then it runs the main job at v1-small,
# whose summary says whether the committed model wins.
#
#   scripts/recipe-v1-small.sh [STORE] [--set NAME=VALUE ...]
#
# STORE defaults to a new temporary folder; the `--set`s go to the main job (e.g.
# `--set steps=500`). SOMA_FLOW names the binary (default: a release build, built here).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${SOMA_FLOW:-}" ]]; then
    cargo build --release --locked
    SOMA_FLOW=target/release/soma-flow
fi
store=$(mktemp -d)
if [[ $# -gt 0 && $1 != --* ]]; then
    store=$1
    shift
fi
echo "store: $store"
for seed in 1 2; do
    key="$store/competitor-$seed.key"
    [[ -e $key ]] || "$SOMA_FLOW" keygen --out "$key"
    "$SOMA_FLOW" --store "$store" run pipelines/train.yaml \
        --set arch=v1-small --set seed=$seed --set key_file="$key"
done
"$SOMA_FLOW" --store "$store" run pipelines/distill.yaml --set arch=v1-small "$@"
