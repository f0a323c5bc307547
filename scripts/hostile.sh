#!/usr/bin/env bash
# The hostile cases of the CWMP front door (docs/BENCHMARKS.md, "Hostile clients"): starts
# `roost serve --cpe-auth required` on a fresh SQLite database under the common default file
# limit (1,024), bootstraps roost-sim CPEs with valid credentials, then runs one phase per
# attack while those CPEs inform at a fixed rate, and prints a markdown table: the CPE
# sessions' latency and failures, the server's peak and final memory and peak descriptors, and
# what the attackers got.
#
#   scripts/hostile.sh [--phase 10] [--rate 50] [--devices 20]
#
# Attackers connect from other loopback addresses (127.0.0.2 and up) than the CPEs (127.0.0.1).
# ROOST_BIN runs another `roost` binary as the server (an earlier build, for a before/after).
# Results are also written to target/bench/<time>-hostile.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

phase=10
rate=50
devices=20
while [ $# -gt 0 ]; do
  case "$1" in
    --phase) phase=$2; shift ;;
    --rate) rate=$2; shift ;;
    --devices) devices=$2; shift ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cargo build --release --locked -p roost -p roost-sim -p roost-tests --bins
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

mapfile -t ports < <(target/release/roost-bench ports --count 2)
cwmp_port=${ports[0]}
http_port=${ports[1]}
roost=("${ROOST_BIN:-target/release/roost}")
printf 'fleet-pass' | "${roost[@]}" cpe-credential create --data-dir "$tmp/data" --username fleet --password-stdin >/dev/null
printf 'bench-password-1234' | "${roost[@]}" user create --data-dir "$tmp/data" --org platform \
  --email bench@example.com --role platform-admin --password-stdin >/dev/null

# The limit many hosts give a process that no service manager raised: the server must keep
# /healthz and its CPEs alive within it.
(
  ulimit -n 1024
  ROOST_LOG=warn exec "${roost[@]}" serve --cpe-auth required --data-dir "$tmp/data" \
    --cwmp-listen "127.0.0.1:$cwmp_port" --http-listen "127.0.0.1:$http_port" --stun-listen 127.0.0.1:0
) >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.1
done
token=$(curl -fs "http://127.0.0.1:$http_port/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-1234"}' | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')

mkdir -p target/bench
out="target/bench/$(date +%Y%m%dT%H%M%S)-hostile.txt"
{
  echo "# hostile clients, server ${ROOST_BIN:-$(git rev-parse --short HEAD)}, $(nproc) cores, server file limit 1024"
  (
    ulimit -n 8192
    target/release/roost-bench hostile --cwmp "127.0.0.1:$cwmp_port" --http "127.0.0.1:$http_port" \
      --server-pid "$server_pid" --username fleet --password fleet-pass --api-token "$token" \
      --devices "$devices" --rate "$rate" --phase "$phase"
  )
  echo "server log lines: $(wc -l <"$tmp/server.log")"
  grep -c "connection limit reached" "$tmp/server.log" | sed 's/^/  connection-limit lines: /'
  grep -c "authentication failed\|throttled\|delayed" "$tmp/server.log" | sed 's/^/  authentication-failure lines: /'
} 2>&1 | tee "$out"
