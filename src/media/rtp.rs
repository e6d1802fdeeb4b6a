//! RTP packets (RFC 3550 §5.1): a sans-IO packetizer that turns an encoded G.711 announcement
//! into 20 ms packets (RFC 3551 §4.5.14: 160 samples at 8 kHz), and a header parser for the
//! packets the caller sends us (DTMF, RFC 4733).
//!
//! The packetizer does no timing: the player decides when `next` is called.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;

use super::g711::Codec;

/// Fixed header size without CSRCs (RFC 3550 §5.1).
pub const HEADER_LEN: usize = 12;
/// Samples (= G.711 bytes) per packet: 20 ms at 8 kHz.
pub const SAMPLES: usize = 160;
/// RTP version 2 in the top two bits.
const VERSION: u8 = 2;

/// The random starting values RFC 3550 §5.1 asks for: random sequence number and timestamp
/// make known-plaintext attacks on encryption harder, and a random SSRC avoids collisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

impl Start {
    /// Draws the starting values; pass a seeded RNG in tests.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        Start {
            seq: rng.r#gen(),
            ts: rng.r#gen(),
            ssrc: rng.r#gen(),
        }
    }
}

/// Yields one RTP packet per call; the announcement is one talkspurt.
#[derive(Debug, Clone)]
pub struct Packetizer {
    payload: Bytes,
    offset: usize,
    pt: u8,
    silence: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Packetizer {
    /// `payload` is the announcement already encoded with `codec`.
    pub fn new(payload: Bytes, codec: Codec, start: Start) -> Self {
        Packetizer {
            payload,
            offset: 0,
            pt: codec.pt(),
            silence: codec.silence(),
            seq: start.seq,
            ts: start.ts,
            ssrc: start.ssrc,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets already produced.
    pub fn sent(&self) -> usize {
        self.offset.div_ceil(SAMPLES)
    }
}

impl Iterator for Packetizer {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let chunk = self.payload.get(self.offset..)?;
        if chunk.is_empty() {
            return None;
        }
        let chunk = &chunk[..chunk.len().min(SAMPLES)];
        // RFC 3551 §4.1: the marker is set on the first packet of a talkspurt, so the
        // receiver can resynchronise its jitter buffer.
        let marker = if self.offset == 0 { 0x80 } else { 0 };
        let mut p = BytesMut::with_capacity(HEADER_LEN + SAMPLES);
        p.put_u8(VERSION << 6);
        p.put_u8(marker | self.pt);
        p.put_u16(self.seq);
        p.put_u32(self.ts);
        p.put_u32(self.ssrc);
        p.put_slice(chunk);
        // A short last packet would change the packet time mid-stream; pad with silence
        // instead (not 0x00, which is loud in μ-law).
        p.put_bytes(self.silence, SAMPLES - chunk.len());
        self.offset += chunk.len();
        self.seq = self.seq.wrapping_add(1);
        // One timestamp unit per sample; 160 is exact for 8 kHz, and wraps as RFC 3550 says.
        self.ts = self.ts.wrapping_add(SAMPLES as u32);
        Some(p.freeze())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self
            .payload
            .len()
            .saturating_sub(self.offset)
            .div_ceil(SAMPLES);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Packetizer {}

/// Which received packets belong to the caller's stream (symmetric RTP latching): the first
/// well-formed RTP packet fixes the source address and SSRC; a packet from the address the
/// caller's SDP named takes the latch over once (the signalled address is the better claim,
/// a NAT-ed caller's first packet the only one). Everything else is foreign, so key presses
/// cannot be injected by whoever learns the port.
#[derive(Debug, Clone, Copy)]
pub struct Latch {
    signalled: SocketAddr,
    latched: Option<(SocketAddr, u32)>,
}

impl Latch {
    pub fn new(signalled: SocketAddr) -> Self {
        Self {
            signalled,
            latched: None,
        }
    }

    /// Whether `packet` from `from` is the caller's.
    pub fn accepts(&mut self, from: SocketAddr, packet: &[u8]) -> bool {
        let Some((header, _)) = parse(packet) else {
            return false;
        };
        match self.latched {
            Some(latched) if latched == (from, header.ssrc) => true,
            Some((source, _)) if source != self.signalled && from == self.signalled => {
                self.latched = Some((from, header.ssrc));
                true
            }
            Some(_) => false,
            None => {
                self.latched = Some((from, header.ssrc));
                true
            }
        }
    }
}

/// The header fields of a received packet that the DTMF detector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

/// Parses a received RTP packet into its header and payload (RFC 3550 §5.1, §5.3.1),
/// skipping CSRCs and a header extension and removing padding. `None` for anything that is
/// not a well-formed version 2 packet.
pub fn parse(packet: &[u8]) -> Option<(Header, &[u8])> {
    let b0 = *packet.first()?;
    if b0 >> 6 != VERSION {
        return None;
    }
    let b1 = *packet.get(1)?;
    let word = |at: usize| -> Option<u32> {
        let b = packet.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let seq = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]);
    let ts = word(4)?;
    let ssrc = word(8)?;
    let mut start = HEADER_LEN + 4 * usize::from(b0 & 0x0F);
    if b0 & 0x10 != 0 {
        // Extension header: 16-bit profile, 16-bit length in 32-bit words (RFC 3550 §5.3.1).
        let len = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    let mut end = packet.len();
    if b0 & 0x20 != 0 {
        // The last byte counts the padding bytes, itself included (RFC 3550 §5.1).
        let pad = usize::from(*packet.last()?);
        end = end.checked_sub(pad)?;
    }
    let header = Header {
        marker: b1 & 0x80 != 0,
        pt: b1 & 0x7F,
        seq,
        ts,
        ssrc,
    };
    // `get` is `None` when CSRCs, extension or padding claim more bytes than there are.
    Some((header, packet.get(start..end)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;

    use super::*;

    const START: Start = Start {
        seq: 65534,
        ts: u32::MAX - 100,
        ssrc: 0xDEAD_BEEF,
    };

    #[test]
    fn packets_have_consecutive_seq_ts_and_marker_on_first_only() {
        let payload = Bytes::from(vec![0x11; 160 * 3]);
        let p = Packetizer::new(payload, Codec::Pcma, START);
        assert_eq!(p.len(), 3);
        let packets: Vec<Bytes> = p.collect();
        assert_eq!(packets.len(), 3);
        for (i, pkt) in packets.iter().enumerate() {
            let (h, body) = parse(pkt).unwrap();
            assert_eq!(pkt.len(), HEADER_LEN + SAMPLES);
            assert_eq!(pkt[0], 0x80, "version 2, no padding, no extension, no CSRC");
            assert_eq!(h.pt, 8);
            assert_eq!(h.marker, i == 0);
            assert_eq!(h.seq, START.seq.wrapping_add(i as u16));
            assert_eq!(h.ts, START.ts.wrapping_add(160 * i as u32));
            assert_eq!(h.ssrc, 0xDEAD_BEEF);
            assert_eq!(body, &[0x11; 160][..]);
        }
        // Wrapped around both counters.
        assert_eq!(parse(&packets[2]).unwrap().0.seq, 0);
    }

    #[test]
    fn last_packet_is_padded_with_codec_silence() {
        for (codec, silence) in [(Codec::Pcmu, 0xFF), (Codec::Pcma, 0xD5)] {
            let payload = Bytes::from(vec![0x22; 200]);
            let packets: Vec<Bytes> = Packetizer::new(payload, codec, START).collect();
            assert_eq!(packets.len(), 2);
            let last = &packets[1][HEADER_LEN..];
            assert_eq!(last.len(), SAMPLES);
            assert!(last[..40].iter().all(|&b| b == 0x22));
            assert!(last[40..].iter().all(|&b| b == silence), "{codec:?}");
        }
    }

    #[test]
    fn empty_payload_yields_no_packets() {
        let mut p = Packetizer::new(Bytes::new(), Codec::Pcmu, START);
        assert_eq!(p.next(), None);
        assert_eq!(p.sent(), 0);
    }

    #[test]
    fn seeded_start_is_reproducible_and_varies_with_seed() {
        let a = Start::random(&mut rand::rngs::StdRng::seed_from_u64(7));
        let b = Start::random(&mut rand::rngs::StdRng::seed_from_u64(7));
        let c = Start::random(&mut rand::rngs::StdRng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn latch_keeps_the_first_stream_and_yields_once_to_the_signalled_address() {
        let signalled: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let nat: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let other: SocketAddr = "127.0.0.3:6000".parse().unwrap();
        let pkt = |ssrc: u32| {
            let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0];
            p.extend_from_slice(&ssrc.to_be_bytes());
            p
        };
        let mut latch = Latch::new(signalled);
        assert!(!latch.accepts(nat, b"not rtp"), "only RTP latches");
        assert!(latch.accepts(nat, &pkt(7)));
        assert!(!latch.accepts(other, &pkt(7)), "another source");
        assert!(!latch.accepts(nat, &pkt(8)), "another SSRC");
        assert!(
            latch.accepts(signalled, &pkt(9)),
            "the signalled address takes over"
        );
        assert!(!latch.accepts(nat, &pkt(7)), "and keeps it");
        assert!(latch.accepts(signalled, &pkt(9)));
    }

    #[test]
    fn parse_skips_csrc_extension_and_padding() {
        let mut p = vec![0x80 | 0x20 | 0x10 | 0x01, 101, 0, 5, 0, 0, 0, 9, 1, 2, 3, 4];
        p.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]); // one-word extension
        p.extend_from_slice(&[0xAA, 0xBB, 0xCC, 0xDD]); // payload
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let (h, body) = parse(&p).unwrap();
        assert_eq!((h.pt, h.seq, h.ts, h.ssrc), (101, 5, 9, 0x0102_0304));
        assert_eq!(body, &[0xAA, 0xBB, 0xCC, 0xDD]);
    }

    #[test]
    fn parse_rejects_short_and_inconsistent_packets_without_panicking() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x80; 11]), None);
        assert_eq!(parse(&[0x40; 12]), None, "version 1");
        let mut too_many_csrc = vec![0x8F, 0];
        too_many_csrc.resize(20, 0);
        assert_eq!(parse(&too_many_csrc), None);
        let mut pad_overrun = vec![0xA0, 0];
        pad_overrun.resize(12, 0);
        pad_overrun.push(200);
        assert_eq!(parse(&pad_overrun), None);
        // Every truncation of a valid packet is handled.
        let full: Vec<u8> = Packetizer::new(Bytes::from(vec![1; 160]), Codec::Pcmu, START)
            .next()
            .unwrap()
            .to_vec();
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
    }
}
