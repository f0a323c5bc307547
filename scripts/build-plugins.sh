#!/usr/bin/env bash
# Build the plugins workspace (plugins/) into WebAssembly components:
#   plugins/target/wasm32-unknown-unknown/release/<crate>.wasm
# and copy the shipped ones (adapter-*, provision-*) to plugins/dist/<name>@<version>.wasm, where
# `roost serve` installs them from (`--plugins-dir`): adapter-huawei → huawei@0.2.0.wasm,
# provision-bootstrap → bootstrap@0.2.0.wasm (the version of plugins/Cargo.toml). The hostile test
# plugins stay in target/.
#
#   scripts/build-plugins.sh [--install] [cargo build arguments…]
#
# With rustup's wasm32-unknown-unknown target installed, this is a plain cargo build. Without it
# (these machines: rustup cannot download targets), it uses Debian's rustc-web, which has LLVM's
# WebAssembly backend, builds the standard library from Debian's matching sources
# (-Zbuild-std) and links with Debian's wasm-component-ld. --install (or CI=true) installs those
# packages with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
[ "${CI:-}" = "true" ] && install=1

# An outer `cargo test` or `cargo run` leaks its toolchain into child processes; the plugins
# build must pick its own.
unset RUSTUP_TOOLCHAIN CARGO RUSTC RUSTDOC RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTFLAGS \
  CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR CARGO_BUILD_TARGET CARGO_MAKEFLAGS

cd plugins

# Copies the shipped components that were built to dist/.
publish() {
  local version out crate name
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
  out=target/wasm32-unknown-unknown/release
  mkdir -p dist
  # Only this version: a server installs whatever it finds here.
  rm -f dist/*.wasm
  for crate in adapter-* provision-*; do
    [ "$crate" = adapter-kit ] && continue
    [ -f "$out/${crate//-/_}.wasm" ] || continue
    name=${crate#adapter-}
    name=${name#provision-}
    cp "$out/${crate//-/_}.wasm" "dist/$name@$version.wasm"
  done
}

if [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown" ]; then
  cargo build --release --locked "$@"
  publish
  exit 0
fi

debian_toolchain_ready() {
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] \
    && [ -x /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld ] \
    && /usr/bin/rustc -V 2>/dev/null | grep -q '^rustc 1\.9[6-9]\|^rustc 1\.[1-9][0-9][0-9]'
}
if ! debian_toolchain_ready; then
  if [ "$install" = 1 ]; then
    echo "build-plugins: installing Debian's WebAssembly-capable Rust (rustc-web)…" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends rustc-web cargo-web rust-web-src rust-web-llvm lld-22 >/dev/null
  else
    echo "build-plugins: no wasm32-unknown-unknown target. Either 'rustup target add wasm32-unknown-unknown'," >&2
    echo "  or run this script with --install (apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22)." >&2
    exit 1
  fi
fi

# -Zbuild-std needs the standard library sources of exactly the compiler's version; a Debian
# update moves both packages, but a half-finished upgrade would fail deep inside core.
compiler=$(dpkg-query -W -f '${Version}' rustc-web 2>/dev/null || true)
sources=$(dpkg-query -W -f '${Version}' rust-web-src 2>/dev/null || true)
if [ -n "$compiler" ] && [ "$compiler" != "$sources" ]; then
  echo "build-plugins: rustc-web $compiler and rust-web-src $sources differ; upgrade both" >&2
  exit 1
fi

# Without RUSTC, Debian's cargo would find rustup's proxy first on PATH (an older compiler that
# cannot build this std).
RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
  /usr/bin/cargo build --release --locked -Zbuild-std=std,panic_abort "$@"
publish
