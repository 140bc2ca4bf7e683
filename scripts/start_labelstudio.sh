#!/usr/bin/env bash
# Start Label Studio (from .venv-ls, see install_labelstudio.sh) on 127.0.0.1 with a
# preset user and legacy API token, ready for a SAM ML backend on the same machine.
#
# Usage: scripts/start_labelstudio.sh [PORT] [DATA_DIR]     (defaults: 8080, ./ls-data)
# Environment (defaults in brackets):
#   LABEL_STUDIO_USERNAME [admin@example.com], LABEL_STUDIO_PASSWORD [admin12345],
#   LABEL_STUDIO_USER_TOKEN [sam-plugin-dev-token], LS_VENV [<repo>/.venv-ls]
# The ML backend runs on loopback, which Label Studio refuses by default:
# ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false allow it (local use only).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${1:-8080}"
data_dir="${2:-./ls-data}"
ls_venv="${LS_VENV:-${repo_root}/.venv-ls}"

export LABEL_STUDIO_USERNAME="${LABEL_STUDIO_USERNAME:-admin@example.com}"
export LABEL_STUDIO_PASSWORD="${LABEL_STUDIO_PASSWORD:-admin12345}"
export LABEL_STUDIO_USER_TOKEN="${LABEL_STUDIO_USER_TOKEN:-sam-plugin-dev-token}"
export ML_BLOCK_LOCAL_IP=false
export SSRF_PROTECTION_ENABLED=false

exec "${ls_venv}/bin/label-studio" start --no-browser --port "${port}" --internal-host 127.0.0.1 \
  --enable-legacy-api-token --data-dir "${data_dir}"
