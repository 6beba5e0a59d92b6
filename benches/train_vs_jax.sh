#!/usr/bin/env bash
# Training on the CPU, batch 2 x 1024, v1-tiny and v1-small, one after the other on this
# machine (run it on an idle one): soma-flow (Burn ndarray) one step, forward +
# backward, CE + 0.02 SIGReg (the `train_step` bench), then the `train` and `distill`
# kinds' tokens/s (`train_tokens`); then soma-models 0.1.7 (Flax/JAX, jit;
# tests/reference/bench_flax.py): the same step, and a distillation step.
#
#   PYTHON=/path/to/python benches/train_vs_jax.sh
#
# PYTHON needs jax, flax and soma-models: `python3 -m venv /tmp/jax &&
# /tmp/jax/bin/pip install soma-models==0.1.7 jax flax`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import jax, flax, soma_models" 2>/dev/null; then
    echo "error: $PYTHON lacks jax, flax or soma-models; install them with" >&2
    echo "  $PYTHON -m pip install soma-models==0.1.7 jax flax" >&2
    exit 1
fi
cargo bench --locked -p soma-flow-stages --bench train_step
cargo bench --locked -p soma-flow-stages --bench train_tokens
"$PYTHON" tests/reference/bench_flax.py
