#!/usr/bin/env bash
# Engine overhead, side by side with DVC (`dvc repro`) on the same pipelines:
#   - a no-op rerun of a 100-stage chain (each stage reads the one before), both tools;
#   - a 2000-stage random DAG (each stage reads 3 earlier ones, fixed seed): its first
#     run (`--jobs 4`, `echo` stages), then a no-op rerun with its peak memory.
#
#   benches/engine_vs_dvc.sh        # RUNS=9; BIN=target/debug/soma-flow (dev profile)
#   TMPDIR=/dev/shm benches/engine_vs_dvc.sh   # on tmpfs: without the disk's inode
#                                              # allocation and fsyncs
#
# Installs DVC 3.67.1 into target/bench-venv on first use (needs PyPI once).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-9}
BIN=${BIN:-target/debug/soma-flow}
[ -x "$BIN" ] || cargo build --locked
BIN=$(realpath "$BIN")
venv=target/bench-venv
if [ ! -x "$venv/bin/dvc" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q dvc==3.67.1
fi
DVC=$(realpath "$venv/bin/dvc")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The median wall time (ms) of RUNS calls of "$@" in the current folder.
median_ms() {
  for _ in $(seq "$RUNS"); do
    s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
    echo $(((e - s) / 1000000))
  done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# Peak resident memory (MiB) of one call of "$@".
peak_mib() {
  /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.0f", $1/1024}'
}

# --- a 100-stage chain, in both tools -------------------------------------------
mkdir -p "$work/chain" && cd "$work/chain"
{
  echo "name: chain100"; echo "stages:"
  for i in $(seq 0 99); do
    echo "  s$i:"; echo "    kind: command"
    [ "$i" -gt 0 ] && echo "    inputs: { prev: s$((i - 1)).o }"
    echo "    with: { run: 'echo $i > outputs/o', outs: [o] }"
  done
} >p.yaml
"$BIN" run p.yaml >/dev/null 2>&1
flow_chain=$(median_ms "$BIN" run p.yaml)

git init -q . && "$DVC" init -q
{
  echo "stages:"
  for i in $(seq 0 99); do
    echo "  s$i:"; echo "    cmd: echo $i > o$i"
    [ "$i" -gt 0 ] && echo "    deps: [o$((i - 1))]"
    echo "    outs: [o$i]"
  done
} >dvc.yaml
"$DVC" repro -q >/dev/null
dvc_chain=$(median_ms "$DVC" repro -q)
cd - >/dev/null

# --- a 2000-stage random DAG -------------------------------------------------------
mkdir -p "$work/dag" && cd "$work/dag"
python3 - <<'EOF' >p.yaml
import random
random.seed(7)
print("name: dag2000\nstages:")
for i in range(2000):
    print(f"  s{i}:\n    kind: command")
    if i >= 3:
        ups = random.sample(range(i), 3)
        print("    inputs: { " + ", ".join(f"i{k}: s{u}.o" for k, u in enumerate(ups)) + " }")
    print(f"    with: {{ run: 'echo {i} > outputs/o', outs: [o] }}")
EOF
s=$(date +%s%N); "$BIN" run p.yaml --jobs 4 >/dev/null 2>&1; e=$(date +%s%N)
dag_first=$(((e - s) / 1000000))
dag_noop=$(median_ms "$BIN" run p.yaml)
dag_peak=$(peak_mib "$BIN" run p.yaml)
cd - >/dev/null

echo "no-op rerun, 100-stage chain: soma-flow ${flow_chain} ms, dvc repro ${dvc_chain} ms ($(python3 -c "print(f'{$dvc_chain / max($flow_chain, 1):.0f}')")x), medians of $RUNS"
echo "2000-stage DAG: first run (--jobs 4) ${dag_first} ms; no-op rerun ${dag_noop} ms (median of $RUNS), ${dag_peak} MiB peak"
echo "per stage: chain $(python3 -c "print(f'{$flow_chain / 100:.3f}')") ms, DAG $(python3 -c "print(f'{$dag_noop / 2000:.3f}')") ms"
