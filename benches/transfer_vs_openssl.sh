#!/usr/bin/env bash
# Moving a 1 GiB model, side by side with the same work done by standard tools:
#   - soma-flow: `cargo bench --bench commit_1gib` (commit: Blake2b-256 of the
#     weights, AES-256-CTR, Blake2b-256 of the ciphertext, upload to a file://
#     bucket, CreateModel + CommitModel to the local network; fetch: ranged
#     download from the bucket, Blake2b-256 of the ciphertext, decryption,
#     written and synced);
#   - the reference: the same bytes through `b2sum -l 256`, `openssl enc
#     -aes-256-ctr` and `curl file://`, in shell pipelines (tee to the hashes),
#     synced; no network transactions.
#
#   benches/transfer_vs_openssl.sh       # SOMA_BENCH_MIB=1024
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${SOMA_BENCH_MIB:-1024}
echo "soma-flow (cargo bench --profile dev -p soma-flow-stages --bench commit_1gib):"
SOMA_BENCH_MIB=$MIB cargo bench --profile dev -p soma-flow-stages --bench commit_1gib 2>/dev/null \
  | grep -E '^(commit|fetch)'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c "${MIB}M" /dev/urandom >"$work/weights"
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
iv=00000000000000000000000000000000
seconds() {
  local s e
  s=$(date +%s%N); "$@"; e=$(date +%s%N)
  awk -v n=$((e - s)) 'BEGIN { printf "%.2f", n / 1e9 }'
}
commit() {
  tee >(b2sum -l 256 >"$work/plain.b2") <"$work/weights" \
    | openssl enc -aes-256-ctr -K "$key" -iv "$iv" \
    | tee >(b2sum -l 256 >"$work/cipher.b2") >"$work/bucket.bin"
  sync "$work/bucket.bin"
}
fetch() {
  curl -s "file://$work/bucket.bin" \
    | tee >(b2sum -l 256 >"$work/fetched.b2") \
    | openssl enc -d -aes-256-ctr -K "$key" -iv "$iv" >"$work/fetched"
  sync "$work/fetched"
}
echo "reference (b2sum, openssl enc, curl):"
echo "commit $MIB MiB (hash, encrypt, hash, write): $(seconds commit) s wall"
echo "fetch $MIB MiB (curl, hash, decrypt, write): $(seconds fetch) s wall"
cmp -s "$work/weights" "$work/fetched" || { echo "the reference round trip differs" >&2; exit 1; }
