#!/usr/bin/env bash
# CI smoke run: builds every fuzz target (stable toolchain, no sanitizer) and runs each for
# SMOKE_SECONDS (30) from a fresh seed corpus. Fails on the first crash, leak or timeout; the
# crashing input is left in fuzz/artifacts/<target>/. Usage: fuzz/smoke.sh
set -euo pipefail
cd "$(dirname "$0")"
seconds=${SMOKE_SECONDS:-30}

# cargo-fuzz has no `--locked`: refuse here a Cargo.lock the build would have to change.
cargo metadata --locked --format-version 1 >/dev/null
# `-s none`: the sanitizers need nightly; coverage instrumentation (sancov) works on stable.
cargo fuzz build -s none
./seed.sh >/dev/null
for target in $(cargo fuzz list); do
  echo "--- $target (${seconds} s)"
  # A scratch corpus: the run's finds stay out of the seed directory.
  work=$(mktemp -d)
  status=0
  cargo fuzz run -s none "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$work.log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|Done )' "$work.log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$work.log" >&2
    echo "fuzz target $target failed (exit $status); input in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  rm -rf "$work" "$work.log"
done
echo "all fuzz targets ran ${seconds} s clean"
