#!/usr/bin/env bash
# Install what the tests need (Debian packages for Xvfb, Qt and venv; tox) and run them with tox.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 \
           libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-cursor0 libxkbcommon-x11-0 \
           libegl1 libgl1 libgl1-mesa-dri libfontconfig1 libdbus-1-3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
PY=${PYTHON:-python3}
# Debian's and Ubuntu's Python make virtual environments only with python3.X-venv (ensurepip)
if [ ! -x .tools/bin/tox ] && ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
  need+=("$("$PY" -c 'import sys; print("python3.%d-venv" % sys.version_info[1])')")
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .tools/bin/tox ]; then
  "$PY" -m venv .tools
  .tools/bin/python -m pip install -q --upgrade pip
  .tools/bin/python -m pip install -q "tox>=4" "virtualenv>=20"
fi
exec .tools/bin/tox -e py3 -- "$@"
