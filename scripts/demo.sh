#!/usr/bin/env bash
# Install napari-ssl in a fresh virtual environment and run the demo on the bundled SEM sample.
# Usage: bash scripts/demo.sh [RESULT_DIR] [extra `napari-ssl demo` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv-demo/bin/napari-ssl ]; then
  "$PY" -m venv .venv-demo
  .venv-demo/bin/python -m pip install -q --upgrade pip
  # torch pinned by the constraints file (a CPU build here; bring your CUDA build elsewhere)
  PIP_CONSTRAINT="$PWD/constraints.txt" .venv-demo/bin/python -m pip install -q -e .
fi
out=napari_ssl_demo
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then out=$1; shift; fi
exec .venv-demo/bin/napari-ssl demo --result_dir "$out" "$@"
