//! TCP stream decoding with arbitrary read splits, as `sip::tcp` feeds `StreamDecoder`.
//!
//! Input: a split-plan byte, then the stream. Property: the stream cut into the planned reads
//! yields the same messages and pings, and fails (or not) the same way, as fed in one piece.
//! Every framed message also parses without panicking.
#![no_main]

use bytes::BytesMut;
use calltrackd::sip::{self, StreamDecoder, StreamItem};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Small enough that the fuzzer reaches the size limit, large enough for real messages.
const MAX: usize = 4096;

/// Feeds `reads` in order; returns the items and whether the decoder failed.
fn decode<'a>(reads: impl Iterator<Item = &'a [u8]>) -> (Vec<StreamItem>, bool) {
    let mut decoder = StreamDecoder::new(MAX);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(_) => return (items, true),
            }
        }
    }
    (items, false)
}

/// Read lengths from a seed: a small xorshift, so one byte describes many cuts.
fn cuts(seed: u8, len: usize) -> Vec<usize> {
    let mut state = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // Mostly tiny reads (1–8 octets), now and then a big one.
        let step = if state % 8 == 0 {
            1 + (state >> 8) as usize % 512
        } else {
            1 + (state >> 8) as usize % 8
        };
        at = (at + step).min(len);
        out.push(at);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = decode(std::iter::once(stream));
    let mut from = 0;
    let pieces = cuts(seed, stream.len()).into_iter().map(|to| {
        let piece = &stream[from..to];
        from = to;
        piece
    });
    let split = decode(pieces);
    assert_eq!(
        whole, split,
        "the read split changed what the stream decodes to"
    );

    for item in whole.0 {
        if let StreamItem::Message(frame) = item {
            assert!(frame.len() <= MAX, "a frame exceeds the size limit");
            let _ = sip::parse(frame);
        }
    }
});
