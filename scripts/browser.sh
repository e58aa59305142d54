#!/usr/bin/env bash
# Installs what the web console's browser tests need, and nothing when it is all there: Debian's Chromium
# and Node.js, and playwright-core from the npm registry (it drives the system Chromium; no browser
# download) under ~/.cache/leadscore/browser. `scripts/browser.sh path` prints that directory.
set -euo pipefail

PLAYWRIGHT_CORE=1.65.1
dir="${LEADSCORE_CACHE:-$HOME/.cache/leadscore}/browser"
if [ "${1:-}" = path ]; then
  echo "$dir"
  exit 0
fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing for the browser tests: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

installed=$(node -p "require('$dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$PLAYWRIGHT_CORE" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_CORE" >&2
fi
