//! An SDP offer (the body of an INVITE) through parsing and answer generation.
//!
//! Properties: `negotiate` agrees with `parse` followed by `answer`; a generated answer is
//! itself SDP our parser reads, with the negotiated media port and payload.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use calltrackd::media::sdp::{self, LocalMedia};
use libfuzzer_sys::fuzz_target;

const LOCAL: LocalMedia = LocalMedia {
    addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
    port: 40_000,
    session_id: 7,
};

fuzz_target!(|data: &[u8]| {
    let negotiated = sdp::negotiate(data, LOCAL);
    let stepwise = sdp::parse(data).and_then(|offer| sdp::answer(&offer, LOCAL));
    assert_eq!(
        negotiated, stepwise,
        "negotiate differs from parse + answer"
    );
    let Ok(answer) = negotiated else {
        return;
    };
    let back = sdp::parse(answer.sdp.as_bytes()).expect("our own answer parses as SDP");
    assert_eq!(back.remote().port(), LOCAL.port, "answer's media port");
});
