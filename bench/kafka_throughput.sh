#!/usr/bin/env bash
# Kafka forwarder throughput vs. a plain rdkafka FutureProducer, both against one tansu broker
# on a free loopback port (SQLite storage in a temp dir). Usage:
#   bench/kafka_throughput.sh [events=500000] [fwd-first|plain-first]
# Needs tansu 0.6.0 (`cargo install tansu --version 0.6.0 --features libsql --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-500000}"
ORDER="${2:-fwd-first}"
# TANSU_DIR=/dev/shm puts the broker's SQLite file on tmpfs (shows what the disk costs).
TANSU_DIR="${TANSU_DIR:-${TMPDIR:-/tmp}}"
TANSU="${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"

cargo build -q --release --example kafka_bench

WORK="$(mktemp -d -p "$TANSU_DIR")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="tcp://127.0.0.1:${PORT}"
( cd "$WORK" && exec "$TANSU" broker --listener-url "$URL" --advertised-listener-url "$URL" \
    --storage-engine sqlite://tansu.db >"$WORK/tansu.log" 2>&1 ) &
TANSU_PID=$!
cleanup() { kill "$TANSU_PID" 2>/dev/null || true; wait "$TANSU_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then break; fi
  sleep 0.05
done
"$TANSU" topic create --broker "$URL" --partitions 3 bench-forwarder
"$TANSU" topic create --broker "$URL" --partitions 3 bench-plain

./target/release/examples/kafka_bench "127.0.0.1:${PORT}" bench-forwarder bench-plain "$EVENTS" "$ORDER"
