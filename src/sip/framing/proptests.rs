//! Property: a TCP stream of valid messages and keepalive pings, cut into reads at arbitrary
//! points, decodes to exactly those messages and pings (RFC 3261 §18.3, RFC 5626 §4.4.1).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

use super::{StreamDecoder, StreamItem};

const MAX: usize = 4096;

/// One valid message: a request or response start line, a few headers with Content-Length in
/// long or compact form, CRLF or bare-LF line ends, and a body of any octets.
fn message() -> impl Strategy<Value = Bytes> {
    let start = prop_oneof![
        Just("INVITE sip:+4930123456@192.0.2.1 SIP/2.0"),
        Just("OPTIONS sip:192.0.2.1 SIP/2.0"),
        Just("CANCEL sip:+4930123456@192.0.2.1 SIP/2.0"),
        Just("SIP/2.0 180 Ringing"),
    ];
    let length_name = prop_oneof![Just("Content-Length"), Just("l"), Just("content-length")];
    let body = proptest::collection::vec(any::<u8>(), 0..200);
    (start, length_name, any::<bool>(), 0..4usize, body).prop_map(
        |(start, length_name, bare_lf, extra, body)| {
            let eol = if bare_lf { "\n" } else { "\r\n" };
            let mut head = format!("{start}{eol}Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1{eol}");
            for i in 0..extra {
                head.push_str(&format!("X-Extra-{i}: value {i}{eol}"));
            }
            head.push_str(&format!("{length_name}: {}{eol}{eol}", body.len()));
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            Bytes::from(bytes)
        },
    )
}

/// A stream item as it is sent: a message, or the double-CRLF ping.
fn item() -> impl Strategy<Value = StreamItem> {
    prop_oneof![
        4 => message().prop_map(StreamItem::Message),
        1 => Just(StreamItem::Ping),
    ]
}

fn wire(items: &[StreamItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        match item {
            StreamItem::Message(m) => out.extend_from_slice(m),
            StreamItem::Ping => out.extend_from_slice(b"\r\n\r\n"),
        }
    }
    out
}

proptest! {
    #[test]
    fn any_split_of_a_valid_stream_decodes_to_the_same_items(
        items in proptest::collection::vec(item(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let stream = wire(&items);
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.push(stream.len());
        at.sort_unstable();

        let mut decoder = StreamDecoder::new(MAX);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut from = 0;
        for to in at {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            while let Some(item) = decoder.decode(&mut buf).expect("a valid stream") {
                out.push(item);
            }
        }
        prop_assert_eq!(out, items);
        prop_assert!(buf.is_empty(), "octets left over");
    }
}
