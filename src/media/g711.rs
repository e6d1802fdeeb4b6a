//! G.711 companding (ITU-T Rec. G.711, 11/1988): 16-bit linear PCM to μ-law (PCMU, RTP payload
//! type 0) and A-law (PCMA, payload type 8), RFC 3551 §4.5.14, plus the decoders that the tests
//! use to check the encoders.
//!
//! G.711 is defined on 14-bit (μ-law) and 13-bit (A-law) linear samples; the encoders take the
//! top bits of a 16-bit sample, which is what every softswitch and `sox` do.

/// The two codecs the announcement is offered in: every SIP trunk supports at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// μ-law, static payload type 0 (North America, Japan, most US-run trunks).
    Pcmu,
    /// A-law, static payload type 8 (Europe and most of the rest).
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 Table 4).
    pub fn pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap` (RFC 3551 §6).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The code word for linear zero, used to pad the last packet: padding with 0x00 instead
    /// would be a full-scale click in μ-law.
    pub fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    /// Encodes a block of 16-bit linear samples, one byte per sample.
    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        let f = match self {
            Codec::Pcmu => encode_ulaw,
            Codec::Pcma => encode_alaw,
        };
        pcm.iter().map(|&s| f(s)).collect()
    }
}

/// μ-law bias (G.711 Table 2a): shifts the segment boundaries so that segment 0 has no gap.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that still fits segment 7 once the bias is added.
const ULAW_CLIP: i32 = 32635;

/// Index of the highest set bit; `x` is positive wherever this is called.
fn top_bit(x: i32) -> i32 {
    31 - x.leading_zeros() as i32
}

/// 16-bit linear → μ-law code word (bits inverted for transmission, as G.711 requires).
pub fn encode_ulaw(sample: i16) -> u8 {
    let x = i32::from(sample);
    let sign = if x < 0 { 0x80 } else { 0 };
    let mag = x.abs().min(ULAW_CLIP) + ULAW_BIAS;
    // mag is in 0x84..=0x7FFF, so the top bit is 7..=14 and the segment 0..=7.
    let seg = top_bit(mag) - 7;
    let mant = (mag >> (seg + 3)) & 0x0F;
    // Truncation to the low byte is the point: the code word is 8 bits.
    !((sign | (seg << 4) | mant) as u8)
}

/// μ-law code word → 16-bit linear (the segment midpoint).
pub fn decode_ulaw(code: u8) -> i16 {
    let u = !code;
    let seg = i32::from((u >> 4) & 0x07);
    let mant = i32::from(u & 0x0F);
    let mag = (((mant << 3) + ULAW_BIAS) << seg) - ULAW_BIAS;
    // |mag| <= 32124, always within i16.
    let v = if u & 0x80 != 0 { -mag } else { mag };
    v as i16
}

/// 16-bit linear → A-law code word (even bits inverted, XOR 0x55, as G.711 requires).
pub fn encode_alaw(sample: i16) -> u8 {
    // A-law works on 13 bits; the arithmetic shift keeps the sign.
    let x = i32::from(sample) >> 3;
    // A-law's sign bit is 1 for positive, and negative values are one's complement so that
    // -1 lands in the same step as 0.
    let (sign, mag) = if x >= 0 { (0x80, x) } else { (0, -x - 1) };
    // mag is in 0..=4095.
    let code = if mag < 32 {
        mag >> 1
    } else {
        let seg = top_bit(mag) - 4;
        (seg << 4) | ((mag >> seg) & 0x0F)
    };
    ((sign | code) as u8) ^ 0x55
}

/// A-law code word → 16-bit linear (the segment midpoint).
pub fn decode_alaw(code: u8) -> i16 {
    let a = code ^ 0x55;
    let seg = i32::from((a >> 4) & 0x07);
    let mant = i32::from(a & 0x0F);
    let mag = if seg == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (seg - 1)
    };
    // |mag| <= 32256, always within i16.
    let v = if a & 0x80 != 0 { mag } else { -mag };
    v as i16
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ulaw_known_vectors() {
        // Values from G.711 Table 2a and the reference tables in ITU-T G.191 (STL g711.c).
        let cases: [(i16, u8); 8] = [
            (0, 0xFF),
            (-1, 0x7F),
            (8, 0xFE),
            (-8, 0x7E),
            (1000, 0xCE),
            (-1000, 0x4E),
            (i16::MAX, 0x80),
            (i16::MIN, 0x00),
        ];
        for (pcm, code) in cases {
            assert_eq!(encode_ulaw(pcm), code, "ulaw({pcm})");
        }
        assert_eq!(decode_ulaw(0xFF), 0);
        assert_eq!(decode_ulaw(0x80), 32124);
        assert_eq!(decode_ulaw(0x00), -32124);
        assert_eq!(decode_ulaw(0xCE), 988);
    }

    #[test]
    fn alaw_known_vectors() {
        let cases: [(i16, u8); 8] = [
            (0, 0xD5),
            (-1, 0x55),
            (8, 0xD5),
            (16, 0xD4),
            (1000, 0xFA),
            (-1000, 0x7A),
            (i16::MAX, 0xAA),
            (i16::MIN, 0x2A),
        ];
        for (pcm, code) in cases {
            assert_eq!(encode_alaw(pcm), code, "alaw({pcm})");
        }
        assert_eq!(decode_alaw(0xD5), 8);
        assert_eq!(decode_alaw(0x55), -8);
        assert_eq!(decode_alaw(0xAA), 32256);
        assert_eq!(decode_alaw(0x2A), -32256);
        assert_eq!(decode_alaw(0xFA), 1008);
    }

    #[test]
    fn every_code_word_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // 0x7F is μ-law's "negative zero": it decodes to 0, which encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(encode_ulaw(decode_ulaw(code)), code, "ulaw {code:#04x}");
            }
            assert_eq!(encode_alaw(decode_alaw(code)), code, "alaw {code:#04x}");
        }
    }

    #[test]
    fn encoding_is_monotonic_and_error_is_bounded() {
        let mut prev_u = decode_ulaw(encode_ulaw(i16::MIN));
        let mut prev_a = decode_alaw(encode_alaw(i16::MIN));
        for pcm in i16::MIN..=i16::MAX {
            let u = decode_ulaw(encode_ulaw(pcm));
            let a = decode_alaw(encode_alaw(pcm));
            assert!(u >= prev_u && a >= prev_a, "not monotonic at {pcm}");
            prev_u = u;
            prev_a = a;
            // The quantisation step of segment 7 is 1024 (μ-law) / 1024 (A-law); half of
            // that plus clipping at the ends bounds the error.
            let eu = (i32::from(pcm) - i32::from(u)).abs();
            let ea = (i32::from(pcm) - i32::from(a)).abs();
            assert!(
                eu <= 644 && ea <= 512,
                "error too large at {pcm}: {eu} {ea}"
            );
        }
    }

    #[test]
    fn codec_silence_is_linear_zero() {
        assert_eq!(Codec::Pcmu.encode(&[0, 0]), vec![Codec::Pcmu.silence(); 2]);
        assert_eq!(Codec::Pcma.encode(&[0]), vec![Codec::Pcma.silence()]);
        assert_eq!((Codec::Pcmu.pt(), Codec::Pcma.pt()), (0, 8));
    }
}
