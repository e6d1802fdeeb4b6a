//! One UDP datagram through framing and the message parser, as `sip::udp` does it.
//!
//! Properties: framing never grows the input and is idempotent on its own output; a parsed
//! message's Content-Length, when present, equals its body's length.
#![no_main]

use calltrackd::sip::{self, Message};
use libfuzzer_sys::fuzz_target;

/// The UDP shell's receive buffer bound.
const MAX: usize = 65_535;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = sip::frame_datagram(data, MAX) else {
        return;
    };
    assert!(frame.len() <= data.len(), "framing grew the datagram");
    let again = sip::frame_datagram(&frame, MAX).expect("a framed datagram frames again");
    assert_eq!(again, frame, "framing is not idempotent");

    let Ok(message) = sip::parse(frame) else {
        return;
    };
    let (headers, body) = match &message {
        Message::Request(r) => (&r.headers, &r.body),
        Message::Response(r) => (&r.headers, &r.body),
    };
    if let Some(length) = headers.get("Content-Length") {
        assert_eq!(
            length.parse::<usize>().ok(),
            Some(body.len()),
            "Content-Length disagrees with the parsed body"
        );
    }
});
