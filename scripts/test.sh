#!/usr/bin/env bash
# The test command (README, CI): installs what the tests run beside soma-flow
# (tests/requirements.txt: moto's S3 server, the official SOMA SDK) in a project-local
# virtual environment (scripts/python-env.sh; a system Python that refuses `pip
# install`, PEP 668, is never touched) and starts a one-node Slurm cluster
# (scripts/slurm-up.sh) and a Vulkan device for the wgpu backend's tests (lavapipe,
# Mesa's Vulkan on the CPU: scripts/vulkan-up.sh), then runs every test of the workspace
# with that environment first on PATH. A missing dependency fails its test; nothing is skipped.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p soma-flow-engine`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv_bin="$(scripts/python-env.sh)"
export PATH="$venv_bin:$PATH"
# A one-node Slurm cluster for the Slurm executor's tests (installed if missing).
scripts/slurm-up.sh
# A Vulkan device for the GPU code path (installed if missing).
scripts/vulkan-up.sh
exec cargo test --workspace --locked "$@"
