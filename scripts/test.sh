#!/usr/bin/env bash
# The test command (README, CI): installs what the tests run beside soma-flow
# (tests/requirements.txt: moto's S3 server, the official SOMA SDK) and starts a
# one-node Slurm cluster (scripts/slurm-up.sh), then runs every
# test of the workspace. A missing dependency fails its test; nothing is skipped.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p soma-flow-engine`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r tests/requirements.txt
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
# A one-node Slurm cluster for the Slurm executor's tests (installed if missing).
scripts/slurm-up.sh
exec cargo test --workspace --locked "$@"
