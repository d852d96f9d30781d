#!/usr/bin/env bash
# Install napari-ssl in a fresh virtual environment and run the demo on the bundled SEM sample.
# Usage: bash scripts/demo.sh [RESULT_DIR] [extra `napari-ssl demo` flags]
# Results go to RESULT_DIR, by default ./napari_ssl_demo; a relative RESULT_DIR is taken from
# the folder you run the script in (the virtual environment goes to the repository's .venv-demo).
set -euo pipefail
out=$PWD/napari_ssl_demo
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  case $1 in /*) out=$1 ;; *) out=$PWD/$1 ;; esac
  shift
fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv-demo/bin/napari-ssl ]; then
  # Debian's and Ubuntu's Python make virtual environments only with python3.X-venv (ensurepip)
  if ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
    pkg=$("$PY" -c 'import sys; print("python3.%d-venv" % sys.version_info[1])')
    echo "demo.sh: '$PY -m venv' is unavailable: install it with: sudo apt-get install $pkg" >&2
    exit 1
  fi
  "$PY" -m venv .venv-demo
  .venv-demo/bin/python -m pip install -q --upgrade pip
  # torch pinned by the constraints file (a CPU build here; bring your CUDA build elsewhere)
  PIP_CONSTRAINT="$PWD/constraints.txt" .venv-demo/bin/python -m pip install -q -e .
fi
exec .venv-demo/bin/napari-ssl demo --result_dir "$out" "$@"
