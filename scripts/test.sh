#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs every test of the
# workspace against SQLite and PostgreSQL.
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

cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads="${ROOST_TEST_THREADS:-4}"
