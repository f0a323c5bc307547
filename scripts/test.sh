#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need (PostgreSQL running, Debian's
# WebAssembly-capable Rust for the plugins when rustup lacks the wasm32 target, schemathesis,
# the portal's npm packages and Debian's Chromium),
# checks formatting and lints (workspace and plugins), builds the plugins, then runs every test:
# the plugins' own, and the workspace's against SQLite and PostgreSQL.
#
# PostgreSQL: ROOST_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test. Each test
# creates its own database there and drops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

export ROOST_TEST_POSTGRES_URL="${ROOST_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

# PostgreSQL must be reachable; on machines of this kind it is installed, but may be stopped.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break; sleep 1; done
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432; the PostgreSQL half of the suite needs it." >&2
  echo "On Debian: apt-get install -y postgresql && pg_ctlcluster <version> main start" >&2
  exit 1
fi

# schemathesis (PyPI, pinned) fuzzes the live API against its OpenAPI document in the end-to-end
# suite; it lives in a virtual environment under target/, apart from the machine's Python.
SCHEMATHESIS_VERSION=4.32.5
if ! target/schemathesis/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv target/schemathesis
  target/schemathesis/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The plugins (shipped ones and the hostile ones of the sandbox tests) are WebAssembly
# components built from source; the host's tests load them from plugins/target/.
scripts/build-plugins.sh --install

# Lints first: a warning or an unformatted file fails the run before the long suites start.
cargo fmt --all -- --check
cargo fmt --manifest-path plugins/Cargo.toml --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
CARGO_TARGET_DIR=target/plugins-native cargo clippy --manifest-path plugins/Cargo.toml --all-targets --locked \
  --target "$(rustc -vV | sed -n 's/^host: //p')" -- -D warnings

# The deployment artefacts (deploy/), with hadolint, the compose schema, kubernetes-validate,
# systemd-analyze, nginx and haproxy.
scripts/check-deploy.sh

cargo build --workspace --all-targets --locked
# The portal (web/dist, against this build's OpenAPI document) and the browser its end-to-end
# test drives: Debian's Chromium, with apt-get when it is missing.
scripts/build-web.sh target/debug/roost
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  else
    echo "Chromium is needed by the portal's end-to-end test: apt-get install chromium" >&2
    exit 1
  fi
fi
# The plugins' own unit tests run natively, against the SDK's in-memory device.
CARGO_TARGET_DIR=target/plugins-native cargo test --manifest-path plugins/Cargo.toml --locked \
  --target "$(rustc -vV | sed -n 's/^host: //p')"
cargo test --workspace --locked -- --test-threads="${ROOST_TEST_THREADS:-4}"
