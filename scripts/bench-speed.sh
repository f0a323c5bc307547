#!/usr/bin/env bash
# TR-143 speed tests through Roost's own endpoints on loopback (docs/BENCHMARKS.md, "Speed
# tests"): starts `roost serve` on a fresh SQLite database, connects one roost-sim TR-098
# device, and runs `POST /api/v1/devices/{id}/speed-test` --runs times with --bytes each way;
# prints the throughput the device measured and the server's CPU time.
#
#   scripts/bench-speed.sh [--bytes 268435456] [--runs 3]
#
# The device (in roost-bench) and the server share the machine's cores.
# ROOST_BIN runs another `roost` binary as the server.
set -euo pipefail
cd "$(dirname "$0")/.."

bytes=268435456
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --bytes) bytes=$2; shift ;;
    --runs) runs=$2; shift ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

bin=${ROOST_BENCH_BIN_DIR:-target/release}
if [ -z "${ROOST_BENCH_BIN_DIR:-}" ]; then
  cargo build --release --locked -p roost -p roost-tests --bins
fi
scripts/build-plugins.sh >/dev/null

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mapfile -t ports < <("$bin/roost-bench" ports --count 2)
cwmp_port=${ports[0]}
http_port=${ports[1]}
roost="${ROOST_BIN:-$bin/roost}"
printf 'bench-password-1234' | "$roost" user create --data-dir "$tmp/data" --org platform \
  --email bench@example.com --role platform-admin --password-stdin >/dev/null
ROOST_LOG=warn "$roost" serve --cpe-auth open --data-dir "$tmp/data" \
  --cwmp-listen "127.0.0.1:$cwmp_port" --http-listen "127.0.0.1:$http_port" --stun-listen 127.0.0.1:0 >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.1
done
token=$(curl -fs "http://127.0.0.1:$http_port/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-1234"}' | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')

mkdir -p target/bench
out="target/bench/$(date +%Y%m%dT%H%M%S)-speed.txt"
{
  echo "# TR-143 speed tests, server ${ROOST_BIN:-$(git rev-parse --short HEAD)}, $(nproc) cores, $bytes bytes each way"
  "$bin/roost-bench" speed-test --cwmp "127.0.0.1:$cwmp_port" --http "127.0.0.1:$http_port" \
    --api-token "$token" --server-pid "$server_pid" --bytes "$bytes" --runs "$runs"
} | tee "$out" || { grep -E "ERROR|WARN" "$tmp/server.log" | tail -5 >&2; exit 1; }
