#!/usr/bin/env bash
# Build the real NodeODX (test infrastructure, never shipped) from the source beside this repository,
# so that tests and benchmarks can prove the relay against the node it must be indistinguishable from.
# Idempotent: does nothing when the build matches the source tarball. Needs Node.js and the npm registry.
# Usage: scripts/build_nodeodx.sh DEST   (source: $NODEODX_SRC, default ../shared/nodeodx/NodeODX-*.tar.gz)
set -euo pipefail
dest=$(realpath -m "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
src=${NODEODX_SRC:-$(ls "$repo"/../shared/nodeodx/NodeODX-*.tar.gz 2>/dev/null | head -n1 || true)}
if [ -z "$src" ] || [ ! -f "$src" ]; then
  echo "NodeODX source not found: expected ../shared/nodeodx/NodeODX-*.tar.gz beside the repository (or NODEODX_SRC)" >&2
  exit 1
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Node.js and npm (apt) for the real NodeODX"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
stamp="$dest/.built-from"
wanted="$(sha256sum "$src" | cut -d' ' -f1) node $(node --version)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
echo "Building NodeODX from $(basename "$src") into $dest (npm install, about a minute)"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
tar -xzf "$src" -C "$dest.tmp" --strip-components=1
(cd "$dest.tmp" && npm install --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
echo "$wanted" > "$dest.tmp/.built-from"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "NodeODX ready: $dest ($(node -p "require('$dest/package.json').version"))"
