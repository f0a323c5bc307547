#!/usr/bin/env bash
# Runs the fuzz targets (docs/TESTING.md) for a while each, then minimizes their corpora, which
# are committed: the test command replays them (tests/corpus.rs in roost-cwmp and roost-http).
#
#   scripts/fuzz.sh [seconds per target, default 600] [target ...]
#
# Targets: decode (host/cwmp/fuzz), framer and digest (host/http/fuzz). cargo-fuzz is installed
# from crates.io when missing. It passes nightly-only flags to rustc; RUSTC_BOOTSTRAP lets the
# machine's stable toolchain accept them. An input that fails a target's checks stops its run
# and is left in fuzz/artifacts/<target>/: fix the code, then copy the input into the corpus
# so the test command keeps replaying it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode framer digest)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

for target in "${targets[@]}"; do
  case "$target" in
    decode) dir=host/cwmp ;;
    framer | digest) dir=host/http ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  (
    cd "$dir"
    cargo fuzz run -O "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
    cargo fuzz cmin -O "$target"
  )
done
