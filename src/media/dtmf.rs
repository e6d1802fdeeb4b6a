//! DTMF key presses from the caller, so they can object to tracking during the announcement:
//! RFC 4733 §2.3 telephone-event payloads carried in RTP, and the SIP INFO
//! `application/dtmf-relay` body that some trunks send instead (a de-facto format from Cisco,
//! `Signal=<key>` / `Duration=<ms>` lines; there is no RFC for it).

use super::rtp;

/// One telephone-event payload block (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Event code; 0-15 are the DTMF keys (RFC 4733 §3.2).
    pub code: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in -dBm0 (0-63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

/// Parses the first 4-byte event block; longer payloads (RFC 2198 redundancy is not
/// negotiated, so only padding) are tolerated.
pub fn parse_event(payload: &[u8]) -> Option<Event> {
    let b = payload.get(..4)?;
    Some(Event {
        code: b[0],
        end: b[1] & 0x80 != 0,
        volume: b[1] & 0x3F,
        duration: u16::from_be_bytes([b[2], b[3]]),
    })
}

/// Maps an RFC 4733 §3.2 DTMF event code to its key.
pub fn key(code: u8) -> Option<char> {
    match code {
        0..=9 => char::from_digit(u32::from(code), 10),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + (code - 12))),
        _ => None,
    }
}

/// How many recent events to remember: enough to absorb reordering between the retransmitted
/// end packets of one key press and the start of the next.
const RECENT: usize = 8;

/// Turns a stream of RTP packets into one key per key press.
///
/// An event is identified by its RTP timestamp (RFC 4733 §2.5.1.2: all packets of one event
/// carry the event's start timestamp) and SSRC. The key is reported on the first packet seen
/// of an event, start or end, so a lost start packet still counts and the caller's objection
/// is acted on at once; every later packet of the event (updates and the three retransmitted
/// end packets of §2.5.1.4) is ignored.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    recent: [Option<(u32, u32)>; RECENT],
    next: usize,
}

impl DtmfDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one received RTP packet; returns the key the first time an event is seen.
    /// Packets of other payload types (the caller's voice) return `None`.
    pub fn on_rtp(&mut self, packet: &[u8], te_pt: u8) -> Option<char> {
        let (header, payload) = rtp::parse(packet)?;
        if header.pt != te_pt {
            return None;
        }
        let event = parse_event(payload)?;
        let key = key(event.code)?;
        let id = (header.ssrc, header.ts);
        if self.recent.contains(&Some(id)) {
            return None;
        }
        self.recent[self.next] = Some(id);
        self.next = (self.next + 1) % RECENT;
        Some(key)
    }
}

/// Parses a SIP INFO `application/dtmf-relay` body (`Signal=9\r\nDuration=160`). The signal
/// is a key (`0`-`9`, `*`, `#`, `A`-`D`) or, as some gateways send, the RFC 4733 code
/// (`10` for `*`, `11` for `#`).
pub fn parse_info(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let value = text.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("signal")
            .then(|| value.trim())
    })?;
    if let Ok(code) = value.parse::<u8>() {
        return key(code);
    }
    let mut chars = value.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        return None;
    }
    matches!(c, '*' | '#' | 'A'..='D').then_some(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TE: u8 = 101;

    fn packet(pt: u8, seq: u16, ts: u32, code: u8, end: bool, duration: u16) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.push(code);
        p.push(if end { 0x80 | 10 } else { 10 });
        p.extend_from_slice(&duration.to_be_bytes());
        p
    }

    #[test]
    fn event_codes_map_to_keys() {
        let keys: String = (0..=15).filter_map(key).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        assert_eq!(key(16), None, "flash is not a key");
    }

    #[test]
    fn event_fields_are_parsed() {
        let e = parse_event(&[9, 0x80 | 0x0A, 0x03, 0x20]).unwrap();
        assert_eq!(
            e,
            Event {
                code: 9,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(parse_event(&[9, 0, 0]), None);
    }

    #[test]
    fn one_key_press_with_three_end_packets_yields_one_key() {
        let mut d = DtmfDetector::new();
        let ts = 48_000;
        let mut keys = Vec::new();
        for (seq, end, dur) in [(1, false, 160), (2, false, 320), (3, false, 480)] {
            keys.extend(d.on_rtp(&packet(TE, seq, ts, 9, end, dur), TE));
        }
        for seq in 4..=6 {
            keys.extend(d.on_rtp(&packet(TE, seq, ts, 9, true, 640), TE));
        }
        assert_eq!(keys, ['9']);
    }

    #[test]
    fn end_packets_alone_still_yield_the_key_once() {
        let mut d = DtmfDetector::new();
        let got: Vec<char> = (1..=3)
            .filter_map(|seq| d.on_rtp(&packet(TE, seq, 800, 11, true, 640), TE))
            .collect();
        assert_eq!(got, ['#']);
    }

    #[test]
    fn two_presses_of_the_same_key_count_twice() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_rtp(&packet(TE, 1, 1000, 5, false, 160), TE), Some('5'));
        assert_eq!(d.on_rtp(&packet(TE, 2, 1000, 5, true, 640), TE), None);
        assert_eq!(d.on_rtp(&packet(TE, 3, 9000, 5, false, 160), TE), Some('5'));
        // A late retransmission of the first press is still recognised as old.
        assert_eq!(d.on_rtp(&packet(TE, 2, 1000, 5, true, 640), TE), None);
    }

    #[test]
    fn voice_and_garbage_packets_are_ignored() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.on_rtp(&packet(0, 1, 1000, 9, false, 160), TE), None);
        assert_eq!(d.on_rtp(&packet(TE, 1, 1000, 16, false, 160), TE), None);
        assert_eq!(d.on_rtp(&[0x80, TE, 0, 1], TE), None);
        let mut short = packet(TE, 1, 1000, 9, false, 160);
        short.truncate(14);
        assert_eq!(d.on_rtp(&short, TE), None);
    }

    #[test]
    fn info_bodies_are_parsed() {
        let cases: [(&[u8], Option<char>); 10] = [
            (b"Signal=9\r\nDuration=160\r\n", Some('9')),
            (b"Signal= 9\nDuration= 160", Some('9')),
            (b"signal=*\r\n", Some('*')),
            (b"Signal=#", Some('#')),
            (b"Signal=10\r\nDuration=250", Some('*')),
            (b"Signal=11", Some('#')),
            (b"Signal=d", Some('D')),
            (b"Duration=160\r\n", None),
            (b"Signal=99", None),
            (b"Signal=\xFF", None),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_info(body),
                want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_info(b"Signal=E"), None);
        assert_eq!(parse_info(b"Signal=12ab"), None);
    }
}
