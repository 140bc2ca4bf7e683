#!/usr/bin/env bash
# Create (idempotently) a separate virtual environment holding Label Studio 1.23.x
# for the end-to-end test of the SAM plugin. Label Studio pins many packages
# (Django, ...) that must not leak into the project venv, hence its own venv.
#
# Usage: scripts/install_labelstudio.sh [VENV_DIR]   (default: .venv-ls at the repo root)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-${repo_root}/.venv-ls}"
spec="${LABEL_STUDIO_SPEC:-label-studio==1.23.*}"

if [[ -x "${venv_dir}/bin/label-studio" ]] && "${venv_dir}/bin/python" -c "import label_studio" 2>/dev/null; then
  echo "Label Studio already installed in ${venv_dir}"
  exit 0
fi

python3 -m venv "${venv_dir}"
"${venv_dir}/bin/pip" install --quiet --upgrade pip
"${venv_dir}/bin/pip" install --quiet "${spec}"
"${venv_dir}/bin/python" -c "import label_studio; print('Label Studio', label_studio.__version__, 'installed in ${venv_dir}')"
