#!/usr/bin/env bash
# One-time set-up on Debian 12: apt packages that are missing, a venv that sees QGIS's Python, the project.
# Usage: scripts/setup.sh VENV PACKAGE...
set -euo pipefail
venv=$1; shift

missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing apt packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# QGIS's bindings belong to Debian's own interpreter: the venv must come from it and see its site-packages.
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[dev]"
"$venv/bin/python" -c "import qgis.core, osgeo.gdal, aiohttp, requests_toolbelt, laspy; print('setup ok')"
