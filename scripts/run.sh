#!/usr/bin/env bash
# Runs Roost from this checkout: builds the shipped plugins (adapters, bootstrap, …) into
# plugins/dist/ — installing Debian's WebAssembly-capable Rust with apt-get when this machine
# lacks a wasm32 target — and the web portal into web/dist/, then `roost serve` with the
# arguments given, which installs those plugins at start and serves the portal at `/`.
#
#   scripts/run.sh [roost serve flags…]     e.g. scripts/run.sh --cpe-auth open
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh --install
cargo build --release --locked --bin roost
scripts/build-web.sh target/release/roost
exec target/release/roost serve "$@"
