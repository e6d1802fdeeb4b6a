#!/usr/bin/env bash
# Announcement load: sipp offers calls at a steady rate to a campaign with a 10 s early-media
# announcement, so about rate x 10 streams play at once. tcpdump timestamps our RTP on loopback;
# the script reports concurrent streams, packet send jitter (deviation of each inter-packet gap
# from 20 ms: p50/p99/max), daemon CPU per stream, and peak RSS.
#
#   bash bench/announce_load.sh [rate=100] [seconds=30]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
rate=${1:-100}
seconds=${2:-30}
calls=$((rate * seconds))
work=$(mktemp -d)
trap 'kill $daemon $capture 2>/dev/null || true; rm -rf "$work"' EXIT
command -v tcpdump >/dev/null || { echo "needs tcpdump (apt-get install tcpdump)"; exit 1; }

cargo build --release --quiet
sox -n -r 8000 -c 1 -b 16 "$work/ten.wav" synth 10 sine 440 vol 0.3
cat > "$work/bench.toml" <<TOML
data_dir = "$work/var"
[sip]
listen = ["127.0.0.1:0"]
[sip.acl]
allow = ["127.0.0.0/8"]
[media]
port_min = 40000
port_max = 49999
[announcements.ten]
version = "bench"
file = "$work/ten.wav"
[numbers]
default_region = "DE"
[[numbers.pool]]
number = "+493055501000"
campaign = "bench"
[campaigns.bench]
destination = "sip:+493055509000@pbx.example.net"
announcement = "ten"
[log]
level = "warn"
TOML

start_daemon "$work/bench.toml" "$work/daemon.log"

(cd "$work" && sipp "127.0.0.1:$port" -sf "$OLDPWD/fixtures/sipp/uac_redirect.xml" -s +493055501000 \
  -i 127.0.0.1 -r "$rate" -m "$calls" -l $((rate * 20)) -timeout $((seconds + 60)) -nostdin \
  -max_socket 65000 > sipp.out 2>&1 || true) &
sipp_job=$!

# Measure a 5 s window once the streams have ramped up (10 s of announcements + 2 s margin).
sleep 12
cpu0=$(awk '{print $14 + $15}' /proc/$daemon/stat)
tcpdump -i lo -s 64 -w "$work/rtp.pcap" 'udp and src portrange 40000-49999' 2>/dev/null &
capture=$!
sleep 5
kill -INT $capture; wait $capture 2>/dev/null || true
cpu1=$(awk '{print $14 + $15}' /proc/$daemon/stat)
wait $sipp_job || true
hwm=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
hz=$(getconf CLK_TCK)

python3 - "$work/rtp.pcap" "$cpu0" "$cpu1" "$hz" "$hwm" "$work/sipp.out" <<'PY'
import struct, sys, collections, re
path, cpu0, cpu1, hz, hwm, sipp_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
data = open(path, "rb").read()
magic, = struct.unpack_from("<I", data, 0)
linktype, = struct.unpack_from("<I", data, 20)
link = {1: 14, 113: 16, 276: 20}.get(linktype, 14)
off, streams = 24, collections.defaultdict(list)
while off + 16 <= len(data):
    sec, usec, incl, _ = struct.unpack_from("<IIII", data, off)
    pkt = data[off + 16: off + 16 + incl]
    off += 16 + incl
    ihl = (pkt[link] & 0x0F) * 4
    sport, = struct.unpack_from("!H", pkt, link + ihl)
    streams[sport].append(sec + usec / 1e6)
gaps = []
for ts in streams.values():
    gaps += [abs((b - a) - 0.020) * 1000 for a, b in zip(ts, ts[1:])]
gaps.sort()
pct = lambda p: gaps[min(len(gaps) - 1, int(len(gaps) * p))]
window = 5.0
mid = [sum(1 for t in ts if min(ts) + 0.0 <= t) for ts in streams.values()]
concurrent = sum(1 for ts in streams.values() if max(ts) - min(ts) > 4.0)
cpu = (cpu1 - cpu0) / hz
text = open(sipp_out, errors="replace").read()
ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
failed = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
print(f"streams seen in the 5 s window: {len(streams)}, playing through all of it: {concurrent}")
print(f"packets: {sum(map(len, streams.values()))}, send jitter (ms): p50 {pct(.5):.3f}  p99 {pct(.99):.3f}  max {gaps[-1]:.3f}")
print(f"daemon CPU: {cpu / window * 100:.1f}% of a core, {cpu / window / max(len(streams), 1) * 100:.3f}% per stream")
print(f"daemon peak RSS: {hwm / 1024:.1f} MiB")
print(f"sipp: successful {ok[-1] if ok else '?'}, failed {failed[-1] if failed else '?'}")
PY
