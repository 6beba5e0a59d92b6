#!/usr/bin/env bash
# The Python half of the test set-up (scripts/test.sh runs it): a project-local
# virtual environment with what the tests run beside soma-flow (tests/requirements.txt:
# moto's S3 server, the official SOMA SDK, …), created on first use and reused. A stock
# Debian or Ubuntu refuses `pip install` into its system Python (PEP 668), so nothing is
# installed there; where `venv` is missing (Debian ships it as `python3-venv`) it is
# installed with apt. Prints the environment's bin folder, which scripts/test.sh puts
# first on PATH, so the tests find `python3` and the servers there.
#
#   PYTHON=python3              the interpreter the environment is made from
#   SOMA_FLOW_VENV=.venv        where it lives (relative to the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
venv="${SOMA_FLOW_VENV:-.venv}"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac

if ! "$venv/bin/python3" -c 'import sys' >/dev/null 2>&1; then
  if ! "$python" -m venv --clear "$venv" >/dev/null 2>&1; then
    echo "python-env: $python cannot make a virtual environment; installing python3-venv" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2
    "$python" -m venv --clear "$venv" >&2
  fi
fi
"$venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
  -r tests/requirements.txt >&2
echo "$venv/bin"
