//! A received RTP packet through the header parser and the RFC 4733 objection-key detector.
//!
//! Properties: the payload is a slice of the packet after the 12-octet header; the detector
//! only yields DTMF keys, only for the telephone-event payload type, and never twice for one
//! event (same SSRC and timestamp).
#![no_main]

use calltrackd::media::{DtmfDetector, dtmf, rtp};
use libfuzzer_sys::fuzz_target;

const TE_PT: u8 = 101;

fuzz_target!(|data: &[u8]| {
    // The input may hold several packets: each is prefixed by one length octet.
    let mut detector = DtmfDetector::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;

        if let Some((header, payload)) = rtp::parse(packet) {
            assert!(
                payload.len() + 12 <= packet.len(),
                "payload overlaps the header"
            );
            let offset = payload.as_ptr() as usize - packet.as_ptr() as usize;
            assert!(
                offset + payload.len() <= packet.len(),
                "payload outside the packet"
            );
            if let Some(event) = dtmf::parse_event(payload) {
                assert!(event.volume <= 0x3F);
            }
            let again = detector.clone().on_rtp(packet, TE_PT);
            let key = detector.on_rtp(packet, TE_PT);
            assert_eq!(key, again, "a clone of the detector decides differently");
            if let Some(key) = key {
                assert_eq!(header.pt, TE_PT, "a key from a non-telephone-event packet");
                assert!(
                    matches!(key, '0'..='9' | '*' | '#' | 'A'..='D'),
                    "not a DTMF key"
                );
                assert_eq!(
                    detector.on_rtp(packet, TE_PT),
                    None,
                    "one event counted twice"
                );
            }
        } else {
            assert_eq!(
                detector.on_rtp(packet, TE_PT),
                None,
                "a key from an unparsed packet"
            );
        }
    }
});
