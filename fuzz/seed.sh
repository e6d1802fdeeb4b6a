#!/usr/bin/env bash
# Builds the seed corpora in fuzz/corpus/<target>/ from fixtures/ and the SIP torture suite
# (RFC 4475 / RFC 5118 messages listed in its manifest.tsv; `SIP_TORTURE_DIR`, else
# ../shared/sip-torture beside the checkout). Corpora are rebuilt, never committed: a fuzz run
# adds its finds beside these seeds. Usage: fuzz/seed.sh
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../fixtures
torture=${SIP_TORTURE_DIR:-../../shared/sip-torture}

# seed TARGET [PREFIX]: stdin (after the printf-escaped PREFIX) becomes one seed, named by its
# content hash so reruns do not duplicate it.
seed() {
  local dir=corpus/$1 tmp
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.new.XXXXXX")
  { printf "${2:-}"; cat; } >"$tmp"
  mv "$tmp" "$dir/$(sha1sum "$tmp" | cut -c1-16)"
}

# The SIP messages: our fixtures and every torture message the manifest lists.
sip_files=("$fixtures"/sip/*.sip)
if [ -f "$torture/manifest.tsv" ]; then
  while IFS=$'\t' read -r file _; do
    [ -f "$torture/$file" ] && sip_files+=("$torture/$file")
  done < <(tail -n +2 "$torture/manifest.tsv")
else
  echo "seed.sh: no torture manifest at $torture; SIP seeds from fixtures only" >&2
fi

i=0
for f in "${sip_files[@]}"; do
  seed sip_datagram <"$f"
  # sip_stream: a split-plan octet, then the message; and the message after a ping.
  seed sip_stream "\\$(printf '%03o' $((i % 256)))" <"$f"
  seed sip_stream "\\$(printf '%03o' $(((i * 37) % 256)))\r\n\r\n" <"$f"
  # sdp_offer: the body after the first empty line, when it is SDP.
  body=$(mktemp)
  sed -e '1,/^\r\{0,1\}$/d' "$f" >"$body"
  if grep -q '^v=0' "$body"; then seed sdp_offer <"$body"; fi
  rm -f "$body"
  i=$((i + 1))
done
# Several messages back to back, with pings between: what a TCP trunk sends.
cat "$fixtures"/sip/options-ping.sip "$fixtures"/sip/invite-compact-headers.sip \
  "$fixtures"/sip/cancel.sip | seed sip_stream '\007'
{ printf '\r\n\r\n'; cat "$fixtures"/sip/options-ping.sip; printf '\r\n\r\n'; } | seed sip_stream '\021'

# RTP: length-prefixed packets (12-octet header, version 2, PT 0 or 101).
printf '\x10\x80\x65\x00\x01\x00\x00\x00\xa0\x12\x34\x56\x78\x05\x0a\x00\xa0' |
  seed rtp_packet
printf '\x10\x80\x65\x00\x02\x00\x00\x00\xa0\x12\x34\x56\x78\x05\x8a\x01\x40\x10\x80\x65\x00\x03\x00\x00\x00\xa0\x12\x34\x56\x78\x05\x8a\x01\x40' |
  seed rtp_packet
printf '\x18\x90\x00\x00\x01\x00\x00\x00\xa0\x12\x34\x56\x78\xbe\xde\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff' |
  seed rtp_packet
printf '\x14\xa1\x65\x00\x01\x00\x00\x00\xa0\x12\x34\x56\x78\x00\x00\x00\x01\x0b\x0a\x00\xa0\x02' |
  seed rtp_packet

# SIP INFO application/dtmf-relay bodies.
for body in 'Signal=5\r\nDuration=160\r\n' 'Signal= *\r\nDuration= 250\r\n' 'signal=11\n' \
            'Signal=D\r\n' 'Duration=100\r\nSignal=#\r\n'; do
  printf "$body" | seed dtmf_info
done

# CDR files: a preset-choice octet (presets in name order: legacy-noheader, sipcarrier-csv,
# telekom-style), then a sample file of that preset.
seed cdr_row '\000' <"$fixtures"/cdr/legacy-sample.csv
seed cdr_row '\000' <"$fixtures"/cdr/clir-sample.csv
seed cdr_row '\001' <"$fixtures"/cdr/sipcarrier-sample.csv
seed cdr_row '\001' <"$fixtures"/cdr/sipcarrier-sample.csv.gz
seed cdr_row '\002' <"$fixtures"/cdr/telekom-sample.csv

# Numbers: a region-choice octet (high bit: international without plus), then the text.
for n in '+4930123456' '030 1234567' '0049 30 1234567' '(030) 123-4567' '%2B4917612345678' \
         'tel:1234567;phone-context=+4930' 'tel:+43-1-234567' '4930123456' '+1 212 555 0100' \
         '00441632960123' '+41446681800' '+33 1 23 45 67 89'; do
  printf '%s' "$n" | seed e164 '\000'
  printf '%s' "$n" | seed e164 '\204'
done

# Config: the documented example and the packaged one.
for f in ../config/*.toml ../packaging/calltrackd.toml; do
  seed config_toml <"$f"
done

for dir in corpus/*/; do
  echo "$(basename "$dir"): $(find "$dir" -type f | wc -l) seeds"
done
