#!/usr/bin/env bash
# Flood: a junk sender on 127.0.0.2 sends [flood_rate] datagrams/s at the daemon while sipp places
# legitimate INVITE→302 calls from 127.0.0.1. Reports calls placed/successful/failed, the
# daemon's CPU (% of one core over the run), what was dropped where (rate limit, ACL, parse
# errors, scanner drops, kernel socket drops) and the machine's load average before the run.
#
#   bash bench/flood.sh [flood_rate=20000] [seconds=30] [call_rate=200]
#
# FLOOD_FROM picks the flooder's standing:
#   untrusted (default)  the ACL allows 127.0.0.1/32 only and on_deny = "reject", so junk meets
#                        the untrusted rate limit (16 per 2 s) before any parsing;
#   trusted              the ACL allows 127.0.0.0/8: a misbehaving trunk host, junk meets the
#                        trusted limit (10,000/s) and what passes is parsed and answered.
# The junk (examples/udp_flood.rs) cycles through random bytes, a truncated INVITE, an OPTIONS
# from "friendly-scanner", an INVITE without Call-ID and a request with a broken Content-Length.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
flood_rate=${1:-20000}
seconds=${2:-30}
call_rate=${3:-200}
from=${FLOOD_FROM:-untrusted}
calls=$((call_rate * seconds))
work=$(mktemp -d)
flooder=""
trap 'kill $daemon $flooder 2>/dev/null || true; wait $daemon 2>/dev/null || true; rm -rf "$work"' EXIT

case "$from" in
  untrusted) acl='allow = ["127.0.0.1/32"]
on_deny = "reject"' ;;
  trusted) acl='allow = ["127.0.0.0/8"]' ;;
  *) echo "FLOOD_FROM must be untrusted or trusted"; exit 1 ;;
esac

cargo build --release --quiet --bin calltrackd --example udp_flood
cat > "$work/bench.toml" <<TOML
data_dir = "$work/var"
[sip]
listen = ["127.0.0.1:0"]
transports = ["udp"]
[sip.acl]
$acl
[numbers]
default_region = "DE"
[[numbers.pool]]
number = "+493055501000"
campaign = "bench"
[campaigns.bench]
destination = "sip:+493055509000@pbx.example.net"
disclosure = "external"
external_uri = "sip:announce@media.example.net"
[ops]
metrics_listen = "127.0.0.1:0"
[log]
level = "warn"
TOML

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_daemon "$work/bench.toml" "$work/daemon.log"
metrics_port=""
for _ in $(seq 50); do
  metrics_port=$(ss -ltnp 2>/dev/null | awk -v pid="pid=$daemon," '$0 ~ pid {split($4,a,":"); print a[length(a)]; exit}')
  [ -n "$metrics_port" ] && break
  sleep 0.1
done
[ -n "$metrics_port" ] || { echo "no metrics endpoint"; exit 1; }

# utime + stime of the daemon, in clock ticks (proc(5) fields 14 and 15).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
# Kernel drops on the daemon's UDP socket (receive buffer full): last column of /proc/net/udp.
socket_drops() {
  local hexport
  hexport=$(printf '%04X' "$port")
  awk -v p=":$hexport" '$2 ~ p"$" {print $NF; exit}' /proc/net/udp
}
drops_before=$(socket_drops)
cpu_before=$(cpu_ticks)
started=$(date +%s.%N)

# Runs a little longer than sipp so every call meets the flood.
./target/release/examples/udp_flood 127.0.0.2 "127.0.0.1:$port" "$flood_rate" $((seconds + 2)) \
  > "$work/flood.out" &
flooder=$!
sleep 1

cd "$work"
sipp "127.0.0.1:$port" -sf "$OLDPWD/fixtures/sipp/uac_redirect.xml" -s +493055501000 \
  -i 127.0.0.1 -r "$call_rate" -m "$calls" -l $((call_rate * 4)) -timeout $((seconds + 60)) \
  -nostdin -trace_stat -fd 5 -recv_timeout 5000 > sipp.out 2>&1 || true
cd "$OLDPWD"
wait "$flooder" || true
flooder=""
ended=$(date +%s.%N)
cpu_ms=$(( ($(cpu_ticks) - cpu_before) * 1000 / $(getconf CLK_TCK) ))
drops_after=$(socket_drops)
curl -s "http://127.0.0.1:$metrics_port/metrics" > "$work/metrics.txt"

stat=$(ls -t "$work"/*_.csv 2>/dev/null | head -1 || true)
python3 - "$stat" "$calls" "$cpu_ms" "$started" "$ended" "$work/flood.out" "$work/metrics.txt" \
  "$drops_before" "$drops_after" "$load_before" "$from" "$flood_rate" <<'PY'
import csv, sys
stat, calls, cpu_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
elapsed = float(sys.argv[5]) - float(sys.argv[4])
sent, flood_secs = open(sys.argv[6]).read().split()
metrics = {}
for line in open(sys.argv[7]):
    if line.startswith("calltrackd_") and " " in line:
        name, value = line.rsplit(" ", 1)
        metrics[name] = float(value)
m = lambda name: int(metrics.get(name, 0))
rows = list(csv.reader(open(stat), delimiter=';'))
head, last = rows[0], rows[-1]
col = lambda name: int(last[head.index(name)])
ok, failed = col("SuccessfulCall(C)"), col("FailedCall(C)")
print(f"flooder: {sys.argv[11]} (127.0.0.2), {int(sent)} junk datagrams in {float(flood_secs):.1f} s "
      f"= {int(sent) / float(flood_secs):.0f}/s (target {sys.argv[12]}/s)")
print(f"legitimate calls (127.0.0.1): placed {calls}, successful {ok}, failed {failed} "
      f"({100.0 * ok / max(calls, 1):.2f} %)")
print(f"daemon CPU: {cpu_ms} ms over {elapsed:.1f} s = {100.0 * cpu_ms / 1000 / elapsed:.1f} % of one core")
print("dropped: rate limit trusted {} / untrusted {}, ACL {}, scanners {}, parse errors {} "
      "(unanswerable {}), kernel socket drops {}".format(
    m('calltrackd_sip_rate_limited_total{source="trusted"}'),
    m('calltrackd_sip_rate_limited_total{source="untrusted"}'),
    m("calltrackd_sip_acl_denied_total"), m("calltrackd_sip_scanners_dropped_total"),
    m("calltrackd_sip_parse_errors_total"), m("calltrackd_sip_dropped_unanswerable_total"),
    int(sys.argv[9] or 0) - int(sys.argv[8] or 0)))
print("responses sent: 1xx {} 3xx {} 4xx {} 5xx {}".format(
    *(m('calltrackd_sip_responses_total{class="%dxx"}' % c) for c in (1, 3, 4, 5))))
print(f"load average before the run: {sys.argv[10]}")
PY
