#!/usr/bin/env bash
# Install everything the tests need (Debian packages for Xvfb/Qt, tox) and run them with tox.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 \
           libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-cursor0 libxkbcommon-x11-0 \
           libegl1 libgl1 libgl1-mesa-dri libfontconfig1 libdbus-1-3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .tools/bin/tox ]; then
  "$PY" -m venv .tools
  .tools/bin/python -m pip install -q --upgrade pip
  .tools/bin/python -m pip install -q "tox>=4" "virtualenv>=20"
fi
exec .tools/bin/tox -e py3 -- "$@"
