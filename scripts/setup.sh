#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the
# project and every test dependency, plus Debian's Chromium for browser tests.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision first and pinned together: a matching pair (the wheels on
# this machine's disk); later installs keep them.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>/dev/null \
  || .venv/bin/python -m pip install -q torch torchvision
# sam2 (the SAM 2.1 reference, test-only) must not build its CUDA extension.
export SAM2_BUILD_CUDA=0
.venv/bin/python -m pip install -q -e ".[test]"

if [ "${SAM_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: Chromium is missing; browser tests will be skipped (install Debian's 'chromium')." >&2
  fi
fi
