#!/usr/bin/env bash
# The integrator's device list and the dashboard under load of data (docs/BENCHMARKS.md): seeds a fresh database
# with --devices devices spread over --orgs organizations, starts `roost serve` on it, and times
# `GET /api/v1/devices` with the filters integrations use and `GET /api/v1/dashboard`, as one tenant's API key (its 1/orgs
# share of the fleet) and as the platform's administrator (all of it); then the portal's device
# list, first page in a fresh Chromium context (web/tests/first-page.mjs), as both.
#
#   scripts/bench-api.sh [sqlite|postgres|all] [--devices 100000] [--orgs 100] [--requests 200]
#
# Environment: ROOST_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test; a
# database roost_bench_api_<pid> is created next to it and dropped afterwards), ROOST_BENCH_DIR
# (where the temporary SQLite database goes, default $TMPDIR or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

backends=all
devices=100000
orgs=100
requests=200
while [ $# -gt 0 ]; do
  case "$1" in
    sqlite | postgres | all) backends=$1 ;;
    --devices) devices=$2; shift ;;
    --orgs) orgs=$2; shift ;;
    --requests) requests=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$backends" = all ] && backends="sqlite postgres"
pg_url=${ROOST_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}

server_pid="" pg_db="" tmp=""
stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$server_pid"; server_pid=""
  if [ -n "$pg_db" ]; then
    psql -q "$pg_url" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    pg_db=""
  fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; tmp=""; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

login() { # login <http port> <email> <password>
  curl -fsS "http://127.0.0.1:$1/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$2\",\"password\":\"$3\"}" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}

run_backend() {
  local backend=$1 url
  tmp=$(mktemp -d "${ROOST_BENCH_DIR:-${TMPDIR:-/tmp}}/roost-bench-api.XXXXXX")
  mkdir -p "$tmp/data"
  if [ "$backend" = postgres ]; then
    pg_db="roost_bench_api_$$"
    psql -q "$pg_url" -c "CREATE DATABASE $pg_db" >/dev/null
    url="${pg_url%/*}/$pg_db"
  else
    url="sqlite://$tmp/data/roost.db?mode=rwc"
  fi
  local ports cwmp_port http_port
  ports=$(target/release/roost-bench ports --count 2 | tr '\n' ' ')
  read -r cwmp_port http_port <<<"$ports"
  echo "## $backend: $devices devices in $orgs organizations, $requests requests per query ($(git rev-parse --short HEAD))"
  target/release/roost-bench seed --database-url "$url" --devices "$devices" --orgs "$orgs" --model tr098 \
    --serial-prefix BENCH | sed 's/^/  /'
  printf 'bench-password-1234' | target/release/roost user create --data-dir "$tmp/data" --database-url "$url" \
    --org platform --email platform@roost.invalid --role platform-admin --password-stdin >/dev/null
  printf 'bench-password-1234' | target/release/roost user create --data-dir "$tmp/data" --database-url "$url" \
    --org bench-org-007 --email admin@bench-org-007.invalid --role org-admin --password-stdin >/dev/null
  ROOST_LOG=warn target/release/roost serve --cpe-auth open --data-dir "$tmp/data" --database-url "$url" \
    --cwmp-listen "127.0.0.1:$cwmp_port" --http-listen "127.0.0.1:$http_port" --stun-listen 127.0.0.1:0 >"$tmp/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$tmp/server.log" >&2; return 1; }
    sleep 0.2
  done
  local platform tenant key version
  platform=$(login "$http_port" platform@roost.invalid bench-password-1234)
  tenant=$(login "$http_port" admin@bench-org-007.invalid bench-password-1234)
  key=$(curl -fsS "http://127.0.0.1:$http_port/api/v1/api-keys" -H "authorization: Bearer $tenant" \
    -H 'content-type: application/json' -d '{"name":"bench","role":"read-only","rate_limit_per_minute":1000000}' |
    sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  version=$(curl -fsS "http://127.0.0.1:$http_port/api/v1/devices?limit=1&fields=software_version" \
    -H "authorization: Bearer $platform" | sed -n 's/.*"software_version":"\([^"]*\)".*/\1/p')
  target/release/roost-bench api-list --http "127.0.0.1:$http_port" --caller "tenant key=$key" \
    --caller "platform admin=$platform" --software-version "$version" --requests "$requests"
  # The portal's device list in Chromium, as both callers (when the portal is built and Chromium
  # is installed: scripts/build-web.sh, apt-get install chromium).
  if [ -f web/dist/index.html ] && [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    ROOST_URL="http://127.0.0.1:$http_port/" RUNS=10 \
      CALLERS="tenant org admin=admin@bench-org-007.invalid=bench-password-1234;platform admin=platform@roost.invalid=bench-password-1234" \
      node web/tests/first-page.mjs
  fi
  echo "server RSS peak: $(awk '/^VmHWM:/ {print $2 / 1024 " MiB"}' "/proc/$server_pid/status")"
  cleanup
}

cargo build --release --locked -p roost -p roost-tests --bins
for backend in $backends; do
  run_backend "$backend"
done
