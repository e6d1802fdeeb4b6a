#!/usr/bin/env bash
# SIP edge load: sipp places INVITE→302 calls over UDP against a release build on loopback and
# reports calls/s, failed calls, time to final response (p50/p99/max), the daemon's peak RSS and
# its CPU time per 1,000 calls.
#
#   bash bench/sip_load.sh [rate=2000] [seconds=60]
#
# The campaign uses the `external` disclosure hook, so the 302 follows at once (no announcement)
# while every call is still pseudonymized and written to the outbox.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
rate=${1:-2000}
seconds=${2:-60}
calls=$((rate * seconds))
work=$(mktemp -d)
trap 'kill $daemon 2>/dev/null || true; wait $daemon 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
cat > "$work/bench.toml" <<TOML
data_dir = "$work/var"
[sip]
listen = ["127.0.0.1:0"]
[sip.acl]
allow = ["127.0.0.0/8"]
[numbers]
default_region = "DE"
[[numbers.pool]]
number = "+493055501000"
campaign = "bench"
[campaigns.bench]
destination = "sip:+493055509000@pbx.example.net"
disclosure = "external"
external_uri = "sip:announce@media.example.net"
[log]
level = "warn"
${BENCH_EXTRA_TOML:-}
TOML

start_daemon "$work/bench.toml" "$work/daemon.log"

# utime + stime of the daemon, in clock ticks (proc(5) fields 14 and 15).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
cpu_before=$(cpu_ticks)
cd "$work"
sipp "127.0.0.1:$port" -sf "$OLDPWD/fixtures/sipp/uac_redirect.xml" -s +493055501000 \
  -i 127.0.0.1 -r "$rate" -m "$calls" -l $((rate * 4)) -timeout $((seconds + 60)) \
  -nostdin -trace_rtt -rtt_freq 1000 -trace_stat -fd 5 -max_socket 65000 \
  -recv_timeout 5000 > sipp.out 2>&1 || true
cd "$OLDPWD"

stat=$(ls -t "$work"/*_.csv 2>/dev/null | head -1 || true)
rtt=$(ls -t "$work"/*_rtt.csv 2>/dev/null | head -1 || true)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
cpu_ms=$(( ($(cpu_ticks) - cpu_before) * 1000 / $(getconf CLK_TCK) ))
python3 - "$stat" "$rtt" "$calls" "$hwm" "$cpu_ms" <<'PY'
import csv, sys
stat, rtt, calls, hwm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cpu_ms = int(sys.argv[5])
rows = list(csv.reader(open(stat), delimiter=';'))
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
ok, failed = int(col("SuccessfulCall(C)")), int(col("FailedCall(C)"))
elapsed = col("ElapsedTime(C)")
h, m, s = elapsed.split(":")[:3]
secs = int(h) * 3600 + int(m) * 60 + float(s)
times = []
for r in csv.reader(open(rtt), delimiter=';'):
    try:
        times.append(float(r[1]))
    except (ValueError, IndexError):
        pass
times.sort()
pct = lambda p: times[min(len(times) - 1, int(len(times) * p))] if times else float("nan")
print(f"calls placed: {calls}, successful: {ok}, failed: {failed}")
print(f"calls/s: {ok / secs:.0f} over {secs:.1f} s")
print(f"time to final (ms): p50 {pct(0.50):.2f}  p99 {pct(0.99):.2f}  max {times[-1] if times else float('nan'):.2f}  ({len(times)} samples)")
print(f"daemon peak RSS: {hwm / 1024:.1f} MiB")
print(f"daemon CPU: {cpu_ms} ms, {cpu_ms * 1000 / max(ok, 1):.0f} ms per 1,000 successful calls")
PY
