#!/usr/bin/env bash
# Roost's periodic-Inform benchmark (docs/BENCHMARKS.md): seeds a fresh database with
# registered, discovered devices, starts `roost serve` on it, drives it with roost-sim, and
# prints sessions/s, latency, failures, the server's memory, the database size and the store
# operations one no-op periodic Inform costs.
#
#   scripts/bench.sh [sqlite|postgres|all] [--devices 100000] [--full-trees 10000] [--duration 30]
#                    [--rate 2000] [--ceiling-concurrency 32] [--model tr098] [--no-ops]
#                    [--presets health] [--ceiling-only] [--warmup 10] [--tls] [--replicas]
#
# After a warm-up (--warmup seconds, default 10), two runs per database: "rate" (every device
# informs once per interval, interval chosen so that the fleet offers --rate sessions/s) and
# "ceiling" (every device informs as often as it can, --ceiling-concurrency sessions in flight:
# the most the server sustains).
# The shipped plugins are installed (plugins/dist, built first), so the default `bootstrap`
# preset exists; it runs on 0 BOOTSTRAP only, which these periodic sessions never send.
# --presets health adds the shipped `health` provision on every periodic Inform (max-age 300 s)
# before the warm-up. A device settles in its third session with it (the first reads the seeded
# figures, the second runs the provision over fresh ones and keeps its output, later ones replay
# it), so a warm-up of fewer than about three sessions per device measures that transition.
# The simulator runs on the same machine and shares its cores with the server.
# Then "null-acs": the ceiling run again against `roost-bench null-acs` on the same port (canned
# InformResponse and 204, no authentication, no database), the yardstick the ceiling is a share of.
# --ceiling-only skips the rate run (for quick comparisons while optimising).
# --tls adds two runs after the others: the server restarted with TLS on its CWMP listener
# (a CA and certificate made by `roost-bench cert`), warmed up again, and the ceiling run over
# HTTPS, each session a new TCP connection and TLS handshake: "ceiling-tls" resumed when the
# simulator holds a ticket or session id (as firmware that keeps one does), "tls-full" with
# resumption off (as firmware that keeps none), each beside the plain ceiling of the same run
# and with its count of full and resumed handshakes.
# --replicas (PostgreSQL) adds two more: the ceiling run through `roost-bench balance` (a
# round-robin TCP balancer) in front of one replica, then of two replicas on the same database,
# each warmed up first. The server columns are the first replica's; busy is the whole machine.
#
# Environment: ROOST_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test; a
# database roost_bench_<pid> is created next to it and dropped afterwards), ROOST_BENCH_DIR
# (where the temporary SQLite database goes, default $TMPDIR or /tmp), ROOST_BENCH_NOTE (a line
# added to the result header), ROOST_BENCH_PERF (a file: the server is profiled with
# `perf record --call-graph dwarf` during the ceiling run, the profile written there).
# ROOST_BENCH_BIN_DIR: take roost, roost-sim and roost-bench from this directory instead of
# building them (for before/after rows: binaries of two revisions, one run after the other).
# Results are also written to target/bench/<time>-<database>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${ROOST_BENCH_BIN_DIR:-target/release}
# Older binaries (before/after rows) know neither a STUN server nor the null ACS, nor (roost-sim)
# --tls-resumption: those runs are skipped.
stun_off=()
serve_help=$("$bin/roost" serve --help 2>/dev/null || true)
[[ $serve_help == *--stun-listen* ]] && stun_off=(--stun-listen 127.0.0.1:0)
null_acs=0
"$bin/roost-bench" null-acs --help >/dev/null 2>&1 && null_acs=1
backends=all
devices=100000
full_trees=10000
duration=30
rate=2000
ceiling_concurrency=32
model=tr098
ops=1
presets=""
ceiling_only=0
warmup=10
tls=0
replicas=0
# The scheme roost-sim speaks, and what it needs for https.
acs_scheme=http
sim_tls=()
prefix=BENCH
while [ $# -gt 0 ]; do
  case "$1" in
    sqlite | postgres | all) backends=$1 ;;
    --devices) devices=$2; shift ;;
    --full-trees) full_trees=$2; shift ;;
    --duration) duration=$2; shift ;;
    --rate) rate=$2; shift ;;
    --ceiling-concurrency) ceiling_concurrency=$2; shift ;;
    --model) model=$2; shift ;;
    --no-ops) ops=0 ;;
    --presets) presets=$2; shift ;;
    --ceiling-only) ceiling_only=1 ;;
    --tls) tls=1 ;;
    --replicas) replicas=1 ;;
    --warmup) warmup=$2; shift ;;
    -h | --help) sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$full_trees" -le "$devices" ] || { echo "--full-trees exceeds --devices" >&2; exit 2; }
[ "$backends" = all ] && backends="sqlite postgres"

pg_url="${ROOST_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
work_root="${ROOST_BENCH_DIR:-${TMPDIR:-/tmp}}"
clk_tck=$(getconf CLK_TCK)
stamp=$(date +%Y%m%dT%H%M%S)
mkdir -p target/bench

# Everything this script starts or creates, so that the trap can undo it.
server_pid="" sim_pid="" sampler_pid="" proxy_pid="" gdb_pid="" perf_pid="" pg_db="" tmp=""
replica_pid="" balancer_pid=""

stop() { # stop <pid>: SIGTERM, then SIGKILL after 15 s.
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop "$perf_pid"; perf_pid=""
  stop "$gdb_pid"; gdb_pid=""
  stop "$sampler_pid"; sampler_pid=""
  stop "$sim_pid"; sim_pid=""
  stop "$server_pid"; server_pid=""
  stop "$replica_pid"; replica_pid=""
  stop "$balancer_pid"; balancer_pid=""
  stop "$proxy_pid"; proxy_pid=""
  if [ -n "$pg_db" ]; then
    psql -q "$pg_url" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 ||
      echo "could not drop database $pg_db" >&2
    pg_db=""
  fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; tmp=""; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
  local sum=0 pid
  for pid in $(ps -u postgres -o pid= 2>/dev/null); do sum=$((sum + $(ticks "$pid"))); done
  echo "$sum"
}

# One line a second: time, server VmRSS and VmHWM (KiB), CPU ticks of the server, the
# simulator and all PostgreSQL processes, the machine's busy and total ticks, and the server's
# open file descriptors.
sampler() {
  local server=$1 sim=$2 out=$3
  while kill -0 "$server" 2>/dev/null; do
    local rss hwm machine fds
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
    machine=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "$(now_ms) $rss $hwm $(ticks "$server") $(ticks "$sim") $(pg_ticks) $machine $fds" >>"$out"
    sleep 1
  done
}

# Creates the presets named in --presets through the API, as an operator would.
add_presets() { # add_presets <database url> <http port>
  [ -n "$presets" ] || return 0
  printf 'bench-password-1234' | $bin/roost user create --data-dir "$tmp/data" --database-url "$1" \
    --org platform --email bench@roost.invalid --role platform-admin --password-stdin >/dev/null
  local token preset body
  token=$(curl -fsS "http://127.0.0.1:$2/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@roost.invalid","password":"bench-password-1234"}' | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  for preset in ${presets//,/ }; do
    case "$preset" in
      health) body='{"events":["2 PERIODIC"],"provision":"health","args":{"max-age":"300"}}' ;;
      *) echo "unknown preset $preset (known: health)" >&2; return 1 ;;
    esac
    curl -fsS -X PUT "http://127.0.0.1:$2/api/v1/presets/$preset" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' -d "$body" >/dev/null
  done
}

wait_healthy() {
  local port=$1
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "roost serve exited; its log:" >&2; tail -n 30 "$tmp/server.log" >&2; return 1; }
    sleep 0.2
  done
  echo "roost serve did not become healthy" >&2
  return 1
}

start_server() { # start_server <database url> <cwmp port> <http port> [more roost serve flags]
  # Each simulated session is a TCP connection of its own, as with real firmware: allow as many
  # descriptors as a production unit would have (a service manager's LimitNOFILE), or at least
  # the hard limit where raising it is not permitted.
  (
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    ROOST_LOG=warn exec $bin/roost serve --cpe-auth open --data-dir "$tmp/data" --database-url "$1" \
      --cwmp-listen "127.0.0.1:$2" --http-listen "127.0.0.1:$3" ${stun_off[@]+"${stun_off[@]}"} "${@:4}"
  ) >>"$tmp/server.log" 2>&1 &
  server_pid=$!
  wait_healthy "$3"
}

# Every simulated session is a TCP connection of its own, closed by the simulator, which keeps
# it in TIME_WAIT for a minute; on loopback those sockets hold ephemeral ports, and a run that
# starts with most of them taken measures the kernel's port search instead of Roost. Wait (up
# to 70 s) for the previous run's sockets to go.
settle() {
  local tw
  for _ in $(seq 1 70); do
    tw=$(ss -Htan state time-wait | wc -l)
    [ "$tw" -lt 2000 ] && break
    sleep 1
  done
  echo "$tw"
}

# The machine is shared: wait (up to 3 minutes) until nothing else keeps it busy, so that a
# build or a test suite running next to the benchmark does not end up in its figures. Prints
# how busy the machine was (%, both CPUs together) over the last 2 s sample.
quiet() {
  local busy=100
  for _ in $(seq 1 90); do
    busy=$( (head -n 1 /proc/stat; sleep 2; head -n 1 /proc/stat) | awk '
      { b[NR] = $2 + $3 + $4 + $7 + $8 + $9; t[NR] = b[NR] + $5 + $6 }
      END { printf "%.0f", 100 * (b[2] - b[1]) / (t[2] - t[1] > 0 ? t[2] - t[1] : 1) }')
    [ "$busy" -lt 10 ] && break
  done
  echo "$busy"
}

# run_sim <label> <roost-sim args…>: runs roost-sim with sampling; leaves its total line and
# the CPU figures in $tmp/<label>.result.
run_sim() {
  local label=$1
  shift
  local time_wait busy_before
  time_wait=$(settle)
  busy_before=$(quiet)
  : >"$tmp/$label.samples"
  $bin/roost-sim --acs "$acs_scheme://127.0.0.1:$cwmp_port/" ${sim_tls[@]+"${sim_tls[@]}"} --model "$model" --serial-prefix "$prefix" \
    --first periodic --cr-listen "127.0.0.1:$cr_port" --duration "$duration" "$@" \
    >"$tmp/$label.sim.log" 2>"$tmp/$label.sim.err" &
  sim_pid=$!
  sampler "$server_pid" "$sim_pid" "$tmp/$label.samples" &
  sampler_pid=$!
  if [ "$label" = ceiling ] && [ -n "${ROOST_BENCH_PERF:-}" ]; then
    perf record -q -F 199 --call-graph dwarf,32768 -p "$server_pid" -o "$ROOST_BENCH_PERF" >"$tmp/perf.log" 2>&1 &
    perf_pid=$!
  fi
  local status=0
  wait "$sim_pid" || status=$?
  sim_pid=""
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; perf_pid=""; fi
  stop "$sampler_pid"
  sampler_pid=""
  if [ "$status" -ne 0 ]; then
    echo "roost-sim failed ($status):" >&2
    tail -n 20 "$tmp/$label.sim.err" >&2
    return 1
  fi
  grep '^roost-sim total' "$tmp/$label.sim.log" | tail -n 1 >"$tmp/$label.result"
  echo "time_wait_at_start=$time_wait busy_before=$busy_before" >>"$tmp/$label.result"
  # The total includes the simulator's start (building 100,000 devices takes seconds): the
  # steady rate leaves the first progress window out.
  awk '/^roost-sim progress/ {
      n++; for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      if (n > 1) { s += v["sessions"]; t += v["elapsed_s"] }
    }
    END { if (t > 0) printf "steady_per_s=%.1f\n", s / t; else print "steady_per_s=-" }' "$tmp/$label.sim.log" >>"$tmp/$label.result"
  # CPU over the run, from the first and last samples (the simulator's own last sample is the
  # last one taken while it was alive).
  awk -v hz="$clk_tck" '
    NR == 1 { t0 = $1; s0 = $4; m0 = $5; p0 = $6; b0 = $7; a0 = $8 }
    { t1 = $1; s1 = $4; if ($5 > 0) m1 = $5; p1 = $6; b1 = $7; a1 = $8; rss = $2; if ($3 > hwm) hwm = $3; fds = $9 }
    END {
      secs = (t1 - t0) / 1000; if (secs <= 0) secs = 1
      server = 100 * (s1 - s0) / hz / secs; sim = 100 * (m1 - m0) / hz / secs; pg = 100 * (p1 - p0) / hz / secs
      other = 100 * (b1 - b0) / hz / secs - server - sim - pg
      printf "server_cpu=%.0f%% sim_cpu=%.0f%% postgres_cpu=%.0f%% other_cpu=%.0f%% machine_busy=%.0f%% rss_end_kib=%d hwm_kib=%d fds_end=%d\n",
        server, sim, pg, (other > 0 ? other : 0), 100 * (b1 - b0) / (a1 - a0 > 0 ? a1 - a0 : 1), rss, hwm, fds
    }' "$tmp/$label.samples" >>"$tmp/$label.result"
  cat "$tmp/$label.sim.log" | grep '^roost-sim progress' | sed 's/^/    /'
}

field() { # field <file> <key>: the value of the first key=value
  awk -v k="$2=" '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) { print substr($i, length(k) + 1); exit } }' "$1"
}
mib() { awk -v k="${1:-0}" 'BEGIN {printf "%.0f MiB", k / 1024}'; }

# Store operations of no-op periodic Informs, counted on the wire (PostgreSQL: the pg-count
# proxy) or at the SQLite C API (gdb breakpoint hit counts in the running server).
ops_sessions=20
ops_sim() { # ops_sim <label>: $ops_sessions sessions, one at a time, of already-seeded devices.
  $bin/roost-sim --acs "http://127.0.0.1:$1/" --model "$model" --serial-prefix "$prefix" \
    --first periodic --cr-listen "127.0.0.1:$cr_port" --devices "$ops_sessions" --concurrency 1 \
    --start immediate --interval 3600 --duration 3 >"$tmp/ops-$2.log" 2>&1
  field "$tmp/ops-$2.log" sessions
}

ops_postgres() {
  local proxy_port=$1 api_port=$2
  # The same database, reached through the pg-count proxy: postgres://user@host:port/db becomes
  # postgres://user@127.0.0.1:<proxy>/db, the proxy forwarding to host:port.
  local rest=${pg_url#*://} userinfo="" upstream url_via_proxy
  case "$rest" in *@*) userinfo="${rest%%@*}@"; rest=${rest#*@} ;; esac
  upstream=${rest%%/*}
  case "$upstream" in *:*) ;; *) upstream="$upstream:5432" ;; esac
  url_via_proxy="postgres://${userinfo}127.0.0.1:$proxy_port/$pg_db?sslmode=disable"
  $bin/roost-bench pg-count --listen "127.0.0.1:$proxy_port" --upstream "$upstream" \
    --trace "$tmp/pg-trace.tsv" >"$tmp/proxy.log" 2>&1 &
  proxy_pid=$!
  sleep 0.5
  start_server "$url_via_proxy" "$ops_cwmp_port" "$api_port"
  sleep 1
  ops_sim "$ops_cwmp_port" warm >/dev/null # every pooled connection prepares its statements once
  local t0 t1 sessions
  t0=$(now_ms)
  sessions=$(ops_sim "$ops_cwmp_port" measured)
  t1=$(now_ms)
  $bin/roost-bench ops-report --trace "$tmp/pg-trace.tsv" --from "$t0" --to "$t1" --sessions "$sessions"
  stop "$server_pid"; server_pid=""
  stop "$proxy_pid"; proxy_pid=""
}

ops_sqlite() {
  # sqlx runs every statement it prepares (or finds in its cache) through one call of
  # sqlx_sqlite::connection::execute::iter, and BEGIN/COMMIT through sqlite3_exec; prepares go
  # through sqlite3_prepare_v3. Hit counts of breakpoints there, in the running server.
  local iter
  iter=$(nm $bin/roost 2>/dev/null | awk '/sqlx_sqlite10connection7execute4iter/ && !seen {print $3; seen = 1}')
  if ! command -v gdb >/dev/null 2>&1 || [ -z "$iter" ]; then
    echo "roost-bench ops: gdb or the sqlx symbols are missing; SQLite store operations not counted"
    return 0
  fi
  gdb -p "$server_pid" -batch -nx -ex 'set pagination off' -ex 'set confirm off' \
    -ex "break *$iter" -ex 'break *sqlite3_exec' -ex 'break *sqlite3_prepare_v3' \
    -ex 'ignore 1 1000000000' -ex 'ignore 2 1000000000' -ex 'ignore 3 1000000000' \
    -ex 'continue' -ex 'info breakpoints' -ex 'detach' >"$tmp/gdb.log" 2>&1 &
  gdb_pid=$!
  for _ in $(seq 1 300); do grep -q '^Continuing' "$tmp/gdb.log" 2>/dev/null && break; sleep 0.1; done
  local sessions
  sessions=$(ops_sim "$cwmp_port" measured)
  sleep 0.5
  kill -INT "$gdb_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$gdb_pid" 2>/dev/null || break; sleep 0.1; done
  stop "$gdb_pid"; gdb_pid=""
  # `info breakpoints`: a "N breakpoint …" line per breakpoint, then "breakpoint already hit K
  # times" unless it was never hit.
  awk -v n="$sessions" '
    /^[0-9]+ +breakpoint/ { bp = $1 }
    /breakpoint already hit/ { for (i = 1; i <= NF; i++) if ($i == "hit") hits[bp] = $(i + 1) }
    END {
      if (n < 1) n = 1
      printf "roost-bench ops sessions=%d statements_per_session=%.2f (prepared statements=%.2f, BEGIN/COMMIT=%.2f, of which new prepares=%.2f)\n",
        n, (hits[1] + hits[2]) / n, hits[1] / n, hits[2] / n, hits[3] / n
    }' "$tmp/gdb.log"
}

# A warm server: connection pools filled, statements prepared, pages cached, as in production.
start_balancer() { # start_balancer <backend>…: roost-bench balance on $balance_port, once it listens.
  local to=() backend
  for backend in "$@"; do to+=(--to "$backend"); done
  $bin/roost-bench balance --listen "127.0.0.1:$balance_port" "${to[@]}" >>"$tmp/balance.log" 2>&1 &
  balancer_pid=$!
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$balance_port") 2>/dev/null && return 0; sleep 0.1; done
  echo "roost-bench balance did not listen:" >&2
  cat "$tmp/balance.log" >&2
  return 1
}

warm_up() {
  echo "warm-up: $warmup s of back-to-back sessions (not measured)"
  $bin/roost-sim --acs "$acs_scheme://127.0.0.1:$cwmp_port/" ${sim_tls[@]+"${sim_tls[@]}"} --model "$model" --serial-prefix "$prefix" \
    --first periodic --cr-listen "127.0.0.1:$cr_port" --devices "$devices" --interval 1 --jitter 0 \
    --start immediate --concurrency "$ceiling_concurrency" --duration "$warmup" >"$tmp/warmup.log" 2>&1 &
  sim_pid=$!
  wait "$sim_pid" || { echo "roost-sim warm-up failed:" >&2; tail -n 20 "$tmp/warmup.log" >&2; return 1; }
  sim_pid=""
}

run_backend() {
  local backend=$1
  tmp=$(mktemp -d "$work_root/roost-bench.XXXXXX")
  mkdir -p "$tmp/data"
  local ports
  ports=$($bin/roost-bench ports --count 9 | tr '\n' ' ')
  read -r cwmp_port http_port cr_port proxy_port ops_cwmp_port ops_http_port b_cwmp_port b_http_port balance_port <<<"$ports"

  local url
  case "$backend" in
    sqlite)
      url="sqlite://$tmp/data/roost.db?mode=rwc"
      local avail_kib need_kib
      avail_kib=$(df -Pk "$tmp" | awk 'NR == 2 {print $4}')
      need_kib=$(((full_trees * 4000 + devices * 10) * 220 / 1024 + 1048576))
      if [ "$avail_kib" -lt "$need_kib" ]; then
        echo "not enough disk under $work_root: ~$((need_kib / 1048576)) GiB needed, $((avail_kib / 1048576)) GiB free" >&2
        return 1
      fi
      ;;
    postgres)
      pg_isready -q -d "$pg_url" || { echo "PostgreSQL is not reachable at $pg_url" >&2; return 1; }
      pg_db="roost_bench_$$"
      psql -q "$pg_url" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" -c "CREATE DATABASE $pg_db" >/dev/null
      url="${pg_url%/*}/$pg_db"
      ;;
  esac

  local interval=$((devices / rate))
  [ "$interval" -ge 1 ] || interval=1
  local offered=$((devices / interval))
  local out="target/bench/$stamp-$backend.txt"
  {
    echo "== Roost benchmark: $backend, $devices devices ($full_trees with full $model trees), $(date -u +%FT%TZ)"
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM;" \
      "roost-sim runs on the same machine and shares the CPUs with roost serve$([ "$backend" = postgres ] && echo ' and PostgreSQL')"
    echo "commit: $built_from${ROOST_BENCH_NOTE:+; $ROOST_BENCH_NOTE}"
    echo "presets: bootstrap (0 BOOTSTRAP only)${presets:+, $presets (every periodic Inform)}"
  } | tee "$out"

  local seed_start seed_s seed_busy
  seed_busy=$(quiet)
  [ "$seed_busy" -lt 10 ] || echo "WARNING: the machine is $seed_busy% busy with other work; seeding time disturbed"
  seed_start=$(now_ms)
  $bin/roost-bench seed --database-url "$url" --devices "$devices" --full-trees "$full_trees" \
    --model "$model" --serial-prefix "$prefix" --cr-advertise "127.0.0.1:$cr_port" \
    --acs-url "http://127.0.0.1:$cwmp_port/" --interval "$interval" | tee "$tmp/seed.log" | sed 's/^/  /'
  seed_s=$(awk -v a="$seed_start" -v b="$(now_ms)" 'BEGIN {printf "%.0f", (b - a) / 1000}')
  # The seeder writes gigabytes without syncing; left to the kernel, that writeback would land
  # in the measured runs (every fsync of the database file waits for it). A production database
  # has no such backlog, so flush it first.
  local sync_start
  sync_start=$(now_ms)
  sync
  echo "  flushed the seeded files to disk in $(awk -v a="$sync_start" -v b="$(now_ms)" 'BEGIN {printf "%.1f", (b - a) / 1000}') s"

  start_server "$url" "$cwmp_port" "$http_port"
  add_presets "$url" "$http_port"
  local idle_rss since
  sleep 1
  idle_rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
  since=$(now_ms)

  warm_up || return 1

  if [ "$ceiling_only" = 0 ]; then
    echo "run rate: $devices devices, interval ${interval}s → ~$offered sessions/s offered, ${duration}s"
    run_sim rate --devices "$devices" --interval "$interval" --start spread --concurrency 4096
  else
    : >"$tmp/rate.result"
  fi
  echo "run ceiling: $devices devices informing back to back, $ceiling_concurrency sessions in flight, ${duration}s"
  run_sim ceiling --devices "$devices" --interval 1 --jitter 0 --start immediate --concurrency "$ceiling_concurrency"
  local peak_kib fds_after close_wait
  peak_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")
  sleep 2
  fds_after=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  close_wait=$(ss -Htn state close-wait "( sport = :$cwmp_port )" | wc -l)
  local wal_mib="-"
  [ -f "$tmp/data/roost.db-wal" ] && wal_mib=$(stat -c %s "$tmp/data/roost.db-wal" | awk '{printf "%.0f MiB", $1 / 1048576}')

  $bin/roost-bench check --database-url "$url" --model "$model" --serial-prefix "$prefix" \
    --cr-advertise "127.0.0.1:$cr_port" --acs-url "http://127.0.0.1:$cwmp_port/" --since "$since" >"$tmp/check.log"

  # Not in $(…): the functions start processes the trap must know about.
  : >"$tmp/ops.txt"
  if [ "$ops" = 1 ]; then
    case "$backend" in
      sqlite) ops_sqlite >"$tmp/ops.txt" ;;
      postgres)
        stop "$server_pid"; server_pid=""
        ops_postgres "$proxy_port" "$ops_http_port" >"$tmp/ops.txt"
        ;;
    esac
  fi
  local ops_out
  ops_out=$(cat "$tmp/ops.txt")
  stop "$server_pid"; server_pid=""

  local runs="rate ceiling"
  # The yardstick: the null ACS (canned answers, no work) on the same port, driven the same way.
  if [ "$null_acs" = 1 ]; then
    $bin/roost-bench null-acs --listen "127.0.0.1:$cwmp_port" >"$tmp/null-acs.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$cwmp_port") 2>/dev/null && break; sleep 0.1; done
    echo "run null-acs: as ceiling, against canned answers"
    run_sim null-acs --devices "$devices" --interval 1 --jitter 0 --start immediate --concurrency "$ceiling_concurrency"
    stop "$server_pid"; server_pid=""
    runs="$runs null-acs"
  fi
  if [ "$tls" = 1 ]; then
    $bin/roost-bench cert --dir "$tmp/tls"
    printf '[tls]\ncwmp_cert = "%s"\ncwmp_key = "%s"\n' "$tmp/tls/server.pem" "$tmp/tls/server.key" >"$tmp/tls.toml"
    start_server "$url" "$cwmp_port" "$http_port" --config "$tmp/tls.toml"
    acs_scheme=https
    sim_tls=(--ca-file "$tmp/tls/ca.pem")
    warm_up || return 1
    echo "run ceiling-tls: as ceiling, over TLS, devices resuming the TLS sessions the server offers"
    run_sim ceiling-tls --devices "$devices" --interval 1 --jitter 0 --start immediate --concurrency "$ceiling_concurrency"
    runs="$runs ceiling-tls"
    if [[ $("$bin/roost-sim" --help) == *--tls-resumption* ]]; then
      echo "run tls-full: as ceiling-tls, every session a full handshake (devices keep no TLS session)"
      sim_tls+=(--tls-resumption off)
      run_sim tls-full --devices "$devices" --interval 1 --jitter 0 --start immediate --concurrency "$ceiling_concurrency"
      runs="$runs tls-full"
    fi
    acs_scheme=http
    sim_tls=()
    stop "$server_pid"; server_pid=""
  fi
  if [ "$replicas" = 1 ] && [ "$backend" = postgres ]; then
    local a_port=$cwmp_port b_pid
    start_server "$url" "$a_port" "$http_port"
    start_balancer "127.0.0.1:$a_port"
    cwmp_port=$balance_port
    warm_up || return 1
    echo "run replicas-1: as ceiling, through the balancer to one replica"
    run_sim replicas-1 --devices "$devices" --interval 1 --jitter 0 --start immediate --concurrency "$ceiling_concurrency"
    stop "$balancer_pid"; balancer_pid=""
    # The first replica's pid where cleanup finds it while the second starts.
    replica_pid=$server_pid
    start_server "$url" "$b_cwmp_port" "$b_http_port"
    b_pid=$server_pid
    server_pid=$replica_pid
    replica_pid=$b_pid
    start_balancer "127.0.0.1:$a_port" "127.0.0.1:$b_cwmp_port"
    warm_up || return 1
    echo "run replicas-2: as ceiling, through the balancer to two replicas on the same database"
    run_sim replicas-2 --devices "$devices" --interval 1 --jitter 0 --start immediate --concurrency "$ceiling_concurrency"
    cwmp_port=$a_port
    stop "$balancer_pid"; balancer_pid=""
    stop "$replica_pid"; replica_pid=""
    stop "$server_pid"; server_pid=""
    runs="$runs replicas-1 replicas-2"
  fi

  local size
  case "$backend" in
    sqlite)
      size=$(du -sk "$tmp/data" | awk '{printf "%.1f GiB", $1 / 1048576}')
      size="$size; the WAL had grown to $wal_mib by the end of the runs"
      ;;
    postgres) size=$(psql -Atq "$pg_url" -c "SELECT round(pg_database_size('$pg_db') / 1073741824.0, 1) || ' GiB'") ;;
  esac

  {
    echo "seeding: ${seed_s}s ($(grep -o 'parameters=[0-9]*' "$tmp/seed.log" | tail -n 1 | cut -d= -f2) parameter rows); database size after the runs: $size"
    printf '%-11s %10s %10s %9s %8s %8s %8s %9s %10s %8s %8s %8s %8s\n' run offered/s sessions/s steady/s p50_ms p99_ms \
      max_ms failures server_cpu sim_cpu pg_cpu other busy
    local label
    for label in $runs; do
      local r="$tmp/$label.result" offered_label="-"
      [ "$label" = rate ] && offered_label=$offered
      printf '%-11s %10s %10s %9s %8s %8s %8s %9s %10s %8s %8s %8s %8s\n' "$label" "$offered_label" \
        "$(field "$r" sessions_per_s)" "$(field "$r" steady_per_s)" "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" \
        "$(field "$r" max_ms)" \
        "$(field "$r" failures)" "$(field "$r" server_cpu)" "$(field "$r" sim_cpu)" \
        "$([ "$backend" = postgres ] && field "$r" postgres_cpu || echo -)" "$(field "$r" other_cpu)" \
        "$(field "$r" machine_busy)"
    done
    [ "$null_acs" = 1 ] && awk -v c="$(field "$tmp/ceiling.result" sessions_per_s)" -v n="$(field "$tmp/null-acs.result" sessions_per_s)" \
      'BEGIN { if (n > 0) printf "ceiling: %.0f %% of the null ACS of this run (the same load generator, cores and port)\n", 100 * c / n }'
    if [ "$tls" = 1 ]; then
      local kind
      for kind in ceiling-tls $([[ $runs == *tls-full* ]] && echo tls-full || true); do
        awk -v label="$kind" -v t="$(field "$tmp/$kind.result" sessions_per_s)" -v p="$(field "$tmp/ceiling.result" sessions_per_s)" \
          -v full="$(field "$tmp/$kind.result" tls_full)" -v resumed="$(field "$tmp/$kind.result" tls_resumed)" \
          'BEGIN { if (p > 0) printf "%s: %.0f %% of the plain ceiling of this run; handshakes full %d, resumed %d (%.0f %% resumed)\n", label, 100 * t / p, full, resumed, (full + resumed > 0) ? 100 * resumed / (full + resumed) : 0 }'
      done
    fi
    if [ "$replicas" = 1 ] && [ "$backend" = postgres ]; then
      awk -v one="$(field "$tmp/replicas-1.result" sessions_per_s)" -v two="$(field "$tmp/replicas-2.result" sessions_per_s)" \
        'BEGIN { if (one > 0) printf "replicas: two replicas serve %.2f times the sessions/s of one, through the same balancer\n", two / one }'
    fi
    echo "server RSS: idle $(mib "$idle_rss"), end of rate run $(mib "$(field "$tmp/rate.result" rss_end_kib)"), end of ceiling run $(mib "$(field "$tmp/ceiling.result" rss_end_kib)"), peak (VmHWM) $(mib "$peak_kib")"
    echo "server open file descriptors: end of rate run $(field "$tmp/rate.result" fds_end), end of ceiling run $(field "$tmp/ceiling.result" fds_end), after both runs $fds_after (CLOSE-WAIT sockets: $close_wait)"
    echo "CPU columns: % of one CPU (the machine has $(nproc)); other = everything else on the machine, kernel network work included; busy = the whole machine"
    echo "TIME_WAIT sockets on the machine when each run started: rate $(field "$tmp/rate.result" time_wait_at_start), ceiling $(field "$tmp/ceiling.result" time_wait_at_start)"
    local label_busy
    for label_busy in rate ceiling; do
      if [ "$(field "$tmp/$label_busy.result" busy_before)" -ge 10 ] 2>/dev/null; then
        echo "WARNING: the machine was $(field "$tmp/$label_busy.result" busy_before)% busy with other work just before the $label_busy run; its figures are disturbed"
      fi
    done
    sed 's/^roost-bench //' "$tmp/check.log"
    [ -z "$ops_out" ] || echo "$ops_out" | sed 's/^roost-bench //'
  } | tee -a "$out"
  echo "(written to $out)"
  cleanup
}

# What the binaries are built from (others may commit while the benchmark runs).
built_from="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- host migrations tests/sim 2>/dev/null || echo ' (server or simulator with local changes)')"
# roost serve installs the shipped plugins from plugins/dist at start.
scripts/build-plugins.sh
if [ -z "${ROOST_BENCH_BIN_DIR:-}" ]; then
  cargo build --release --locked -p roost -p roost-sim -p roost-tests --bins
fi

for backend in $backends; do
  run_backend "$backend"
done
