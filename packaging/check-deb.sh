#!/usr/bin/env bash
# Builds the Debian package and checks it the way a telephony host would use it: the file list,
# dependencies, conffiles and maintainer scripts; then `dpkg -i` on this machine, the packaged
# daemon started as the packaged user with the packaged config (as the unit runs it: without a
# running systemd here, by setpriv), a SIP OPTIONS ping and `calltrackd status` against it, and
# `dpkg --purge` at the end. Prints the figures the closing note asks for.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-deb: $*" >&2; exit 1; }

cargo deb --locked --dbgsym
deb=$(ls target/debian/calltrackd_*_amd64.deb)
echo "== $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}'
files=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/calltrackd ./usr/lib/systemd/system/calltrackd.service \
         ./usr/lib/sysusers.d/calltrackd.conf ./usr/lib/tmpfiles.d/calltrackd.conf \
         ./etc/calltrackd/calltrackd.toml ./usr/share/calltrackd/audio/disclosure-en.wav \
         ./usr/share/calltrackd/audio/disclosure-de.wav ./usr/share/calltrackd/schema/call-event.v1.json \
         ./usr/share/doc/calltrackd/examples/low-port.conf; do
  grep -qx -- "$f" <<<"$files" || fail "missing $f"
done
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
grep -q libssl3 <<<"$depends" || fail "no libssl3 dependency"
ctl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctl"
grep -qx /etc/calltrackd/calltrackd.toml "$ctl/conffiles" || fail "config is not a conffile"
grep -q 'systemd-sysusers' "$ctl/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper enable calltrackd.service' "$ctl/postinst" || fail "unit not enabled"
grep -q 'deb-systemd-invoke $_dh_action calltrackd.service' "$ctl/postinst" || fail "unit not started"
grep -q 'rm -rf /var/lib/calltrackd' "$ctl/postrm" || fail "purge keeps state"
for s in postinst postrm prerm; do sh -n "$ctl/$s"; done
mkdir -p "$ctl/data" && dpkg-deb -x "$deb" "$ctl/data"
if readelf -S "$ctl/data/usr/bin/calltrackd" | grep -q '\.debug_info'; then
  fail "the packaged binary is not stripped (debug symbols belong in the -dbgsym package)"
fi

echo "== dpkg -i"
dpkg -i "$deb"
trap 'dpkg --purge calltrackd >/dev/null 2>&1 || true' EXIT
id calltrackd
[ "$(stat -c '%U:%G %a' /etc/calltrackd/calltrackd.toml)" = "root:calltrackd 640" ] \
  || fail "config ownership: $(stat -c '%U:%G %a' /etc/calltrackd/calltrackd.toml)"
[ "$(stat -c '%U:%G %a' /var/lib/calltrackd)" = "calltrackd:calltrackd 750" ] || fail "state dir"
[ -L /etc/systemd/system/multi-user.target.wants/calltrackd.service ] || fail "unit not enabled"
runuser -u calltrackd -- calltrackd check-config /etc/calltrackd/calltrackd.toml

echo "== the packaged daemon, as its user"
log=$(mktemp)
# setpriv execs the daemon itself (runuser would stay in between and mask its exit status).
setpriv --reuid=calltrackd --regid=calltrackd --init-groups \
  calltrackd run --config /etc/calltrackd/calltrackd.toml 2>"$log" &
pid=$!
for _ in $(seq 100); do grep -q 'Listening.' "$log" && break; sleep 0.1; done
grep 'Listening.' "$log" || { cat "$log"; fail "the packaged daemon did not start"; }
sipp 127.0.0.1:5060 -sf fixtures/sipp/uac_options.xml -m 1 -timeout 10 -timeout_error \
  -nostdin -i 127.0.0.1 -p 0 >/dev/null || fail "no 200 to OPTIONS from the packaged daemon"
runuser -u calltrackd -- calltrackd status --config /etc/calltrackd/calltrackd.toml
kill -TERM "$pid"
wait "$pid" || fail "the packaged daemon did not stop cleanly"
[ -f /var/lib/calltrackd/keys/"$(date -u +%Y-%m)".key ] || fail "no pseudonym key in the state dir"

echo "== dpkg --purge"
dpkg --purge calltrackd
trap - EXIT
[ ! -e /var/lib/calltrackd ] || fail "purge left /var/lib/calltrackd"
echo "check-deb: OK"
