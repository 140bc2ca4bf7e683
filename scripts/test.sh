#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow and end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_labelstudio.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
