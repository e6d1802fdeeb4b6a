#!/usr/bin/env bash
# CDR ingest throughput: a generated 1,000,000-row file through the whole pipeline (parse,
# normalize, pseudonymize, correlate, outbox append with fsync per batch) beside a bare `csv`
# parse of the same file, in the same run.
#
#   bash bench/cdr_ingest.sh [rows=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
file=$(mktemp --suffix=.csv)
trap 'rm -f "$file"' EXIT
cargo run --release --quiet --example gen_cdr -- "$rows" "$file"
cargo run --release --quiet --example bench_cdr -- "$file"
