#!/usr/bin/env bash
# Builds the web portal into web/dist, which `roost serve` serves at `/`: installs web/'s npm
# packages as package-lock.json pins them (when they changed), regenerates the API client's
# types from this checkout's own OpenAPI document (`roost openapi`), type-checks the portal
# against them (a route or field the server changed fails here, not in a browser), builds.
#
#   scripts/build-web.sh [ROOST_BINARY]    default: target/debug/roost, built when missing
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  echo "npm (Node.js 20 or later) is needed to build the portal: apt-get install nodejs npm" >&2
  exit 1
fi
roost="${1:-target/debug/roost}"
if [ ! -x "$roost" ]; then
  cargo build --locked --bin roost
  roost=target/debug/roost
fi

cd web
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
"../$roost" openapi > ../target/openapi.json
npm run --silent api
npm run --silent check
npm run --silent build
