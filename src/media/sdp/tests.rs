#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

const LOCAL: LocalMedia = LocalMedia {
    addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
    port: 40000,
    session_id: 42,
};

/// Joins lines with CRLF, the way a trunk sends them.
fn sdp(lines: &[&str]) -> Vec<u8> {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s.into_bytes()
}

fn offer_with(m: &str, attrs: &[&str]) -> Vec<u8> {
    let mut lines = vec![
        "v=0",
        "o=caller 1 1 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        m,
    ];
    lines.extend_from_slice(attrs);
    sdp(&lines)
}

#[test]
fn negotiate_table() {
    struct Case {
        name: &'static str,
        m: &'static str,
        attrs: &'static [&'static str],
        want: Result<(Codec, Option<u8>), SdpError>,
    }
    const TE: &str = "a=rtpmap:101 telephone-event/8000";
    let cases = [
        Case {
            name: "PCMU listed first wins",
            m: "m=audio 5004 RTP/AVP 0 8",
            attrs: &[],
            want: Ok((Codec::Pcmu, None)),
        },
        Case {
            name: "PCMA listed first wins",
            m: "m=audio 5004 RTP/AVP 18 8 0",
            attrs: &["a=rtpmap:18 G729/8000"],
            want: Ok((Codec::Pcma, None)),
        },
        Case {
            name: "only G.729 has no common codec",
            m: "m=audio 5004 RTP/AVP 18",
            attrs: &["a=rtpmap:18 G729/8000"],
            want: Err(SdpError::NoCommonCodec),
        },
        Case {
            name: "telephone-event 101 is carried",
            m: "m=audio 5004 RTP/AVP 8 101",
            attrs: &["a=rtpmap:8 PCMA/8000", TE, "a=fmtp:101 0-16"],
            want: Ok((Codec::Pcma, Some(101))),
        },
        Case {
            name: "telephone-event at 48 kHz is not ours",
            m: "m=audio 5004 RTP/AVP 0 110",
            attrs: &["a=rtpmap:110 telephone-event/48000"],
            want: Ok((Codec::Pcmu, None)),
        },
        Case {
            name: "telephone-event rtpmap for an unlisted PT is ignored",
            m: "m=audio 5004 RTP/AVP 0",
            attrs: &[TE],
            want: Ok((Codec::Pcmu, None)),
        },
        Case {
            name: "port zero",
            m: "m=audio 0 RTP/AVP 0",
            attrs: &[],
            want: Err(SdpError::PortZero),
        },
        Case {
            name: "SRTP only",
            m: "m=audio 5004 RTP/SAVP 0",
            attrs: &[],
            want: Err(SdpError::NoAudio),
        },
        Case {
            name: "video only",
            m: "m=video 5006 RTP/AVP 31",
            attrs: &[],
            want: Err(SdpError::NoAudio),
        },
    ];
    for c in cases {
        let got = negotiate(&offer_with(c.m, c.attrs), LOCAL).map(|a| (a.codec, a.te_pt));
        assert_eq!(got, c.want, "{}", c.name);
    }
}

#[test]
fn answer_text_follows_rfc3264() {
    let offer = offer_with(
        "m=audio 5004 RTP/AVP 8 0 101",
        &["a=rtpmap:101 telephone-event/8000", "a=ptime:30"],
    );
    let a = negotiate(&offer, LOCAL).unwrap();
    assert_eq!(
        a.sdp,
        "v=0\r\n\
         o=- 42 42 IN IP4 203.0.113.10\r\n\
         s=-\r\n\
         c=IN IP4 203.0.113.10\r\n\
         t=0 0\r\n\
         m=audio 40000 RTP/AVP 8 101\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    assert_eq!(a.remote, "198.51.100.7:5004".parse().unwrap());
    assert_eq!(a.direction, Direction::SendRecv);
}

#[test]
fn parse_reports_formats_direction_and_ptime() {
    let offer = offer_with(
        "m=audio 5004 RTP/AVP 18 0 8 101",
        &[
            "a=rtpmap:18 G729/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=ptime:20",
            "a=sendrecv",
        ],
    );
    let o = parse(&offer).unwrap();
    let pts: Vec<u8> = o.formats.iter().map(|f| f.pt).collect();
    assert_eq!(pts, [18, 0, 8, 101]);
    assert_eq!(o.formats[1].encoding.as_deref(), Some("PCMU"));
    assert_eq!(o.formats[2].encoding.as_deref(), Some("PCMA"));
    assert_eq!(o.formats[0].encoding.as_deref(), Some("G729"));
    assert_eq!(o.telephone_event, Some(101));
    assert_eq!(o.ptime, Some(20));
    assert_eq!(o.direction, Direction::SendRecv);
}

#[test]
fn ip6_offer_is_answered() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::7",
        "s=-",
        "t=0 0",
        "m=audio 6000 RTP/AVP 0",
        "c=IN IP6 2001:db8::7",
    ]);
    let local = LocalMedia {
        addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        ..LOCAL
    };
    let a = negotiate(&offer, local).unwrap();
    assert_eq!(a.remote, "[2001:db8::7]:6000".parse().unwrap());
    assert!(a.sdp.contains("c=IN IP6 ::1\r\n"), "{}", a.sdp);
    assert!(a.sdp.contains("o=- 42 42 IN IP6 ::1\r\n"));
}

#[test]
fn media_level_connection_wins_over_session_level() {
    let offer = offer_with("m=audio 5004 RTP/AVP 0", &["c=IN IP4 192.0.2.99"]);
    assert_eq!(
        parse(&offer).unwrap().addr,
        "192.0.2.99".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn bad_address_on_a_stream_we_reject_does_not_fail_the_offer() {
    let offer = sdp(&[
        "v=0",
        "c=IN IP4 0.0.0.0",
        "m=video 5006 RTP/AVP 31",
        "c=IN IP4 carrier.example",
        "m=audio 5004 RTP/AVP 0",
        "c=IN IP4 192.0.2.5",
    ]);
    let a = negotiate(&offer, LOCAL).unwrap();
    assert_eq!(a.remote, "192.0.2.5:5004".parse().unwrap());
    assert!(a.sdp.contains("m=video 0 RTP/AVP 31\r\n"));
}

#[test]
fn session_level_direction_applies_and_answer_mirrors_it() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "a=recvonly",
        "m=audio 5004 RTP/AVP 0",
    ]);
    let a = negotiate(&offer, LOCAL).unwrap();
    assert_eq!(a.direction, Direction::SendOnly);
    assert!(a.direction.sends());
    assert!(a.sdp.ends_with("a=sendonly\r\n"));
}

#[test]
fn other_streams_are_rejected_with_port_zero_in_order() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=video 5006 RTP/AVP 96 97",
        "a=rtpmap:96 H264/90000",
        "m=audio 5004 RTP/AVP 0",
        "m=audio 5008 RTP/AVP 8",
    ]);
    let a = negotiate(&offer, LOCAL).unwrap();
    let m: Vec<&str> = a.sdp.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m,
        [
            "m=video 0 RTP/AVP 96 97",
            "m=audio 40000 RTP/AVP 0",
            "m=audio 0 RTP/AVP 8"
        ]
    );
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let offer =
        b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n";
    assert_eq!(negotiate(offer, LOCAL).unwrap().codec, Codec::Pcmu);
}

#[test]
fn missing_connection_is_an_error() {
    let offer = sdp(&["v=0", "s=-", "t=0 0", "m=audio 5004 RTP/AVP 0"]);
    assert_eq!(negotiate(&offer, LOCAL), Err(SdpError::NoConnection));
}

#[test]
fn malformed_inputs_are_errors_without_echo() {
    let secret = "198.51.100.77";
    let cases: Vec<(Vec<u8>, SdpError)> = vec![
        (Vec::new(), SdpError::Version),
        (b"hello 198.51.100.77".to_vec(), SdpError::Version),
        (sdp(&["v=1"]), SdpError::Version),
        (vec![0xFF, 0xFE, 0x00], SdpError::NotText),
        (vec![b'v'; MAX_LEN + 1], SdpError::TooLarge),
        (
            sdp(&["v=0", "c=IN IP4 198.51.100.77", "garbage 198.51.100.77"]),
            SdpError::Malformed { line: 3 },
        ),
        (
            sdp(&["v=0", "c=IN IP4 198.51.100.77", "m=audio x RTP/AVP 0"]),
            SdpError::Malformed { line: 3 },
        ),
        (
            sdp(&["v=0", "c=IN IP4 198.51.100.77", "m=audio 70000 RTP/AVP 0"]),
            SdpError::Malformed { line: 3 },
        ),
        (
            sdp(&["v=0", "c=IN IP4 198.51.100.77", "m=audio 5004 RTP/AVP"]),
            SdpError::Malformed { line: 3 },
        ),
        (
            sdp(&["v=0", "c=IN IP4", "m=audio 5004 RTP/AVP 0"]),
            SdpError::Malformed { line: 2 },
        ),
        (
            sdp(&["v=0", "c=IN IP4 carrier.example", "m=audio 5004 RTP/AVP 0"]),
            SdpError::BadAddress,
        ),
        (
            sdp(&["v=0", "c=IN IP6 198.51.100.77", "m=audio 5004 RTP/AVP 0"]),
            SdpError::BadAddress,
        ),
        (
            sdp(&["v=0", "c=IN IP4 0.0.0.0", "m=audio 5004 RTP/AVP 0"]),
            SdpError::BadAddress,
        ),
        (
            sdp(&["v=0", "c=IN IP4 224.0.1.1/127", "m=audio 5004 RTP/AVP 0"]),
            SdpError::BadAddress,
        ),
        (
            sdp(&["v=0", "c=IN IP4 198.51.100.77", "m=audio 5004 RTP/AVP x y"]),
            SdpError::NoCommonCodec,
        ),
    ];
    for (input, want) in cases {
        let got = negotiate(&input, LOCAL);
        assert_eq!(
            got,
            Err(want),
            "input {:?}",
            String::from_utf8_lossy(&input)
        );
        let shown = want.to_string();
        assert!(
            !shown.contains(secret) && !shown.contains("198.51"),
            "{shown}"
        );
    }
}

#[test]
fn too_many_streams_is_an_error() {
    let mut lines = vec!["v=0", "c=IN IP4 192.0.2.1"];
    lines.extend(std::iter::repeat_n(
        "m=audio 5004 RTP/AVP 0",
        MAX_STREAMS + 1,
    ));
    assert_eq!(
        negotiate(&sdp(&lines), LOCAL),
        Err(SdpError::TooManyStreams)
    );
}

#[test]
fn debug_output_redacts_the_callers_address() {
    let offer = offer_with("m=audio 5004 RTP/AVP 0", &[]);
    let o = parse(&offer).unwrap();
    let a = answer(&o, LOCAL).unwrap();
    for shown in [format!("{o:?}"), format!("{a:?}")] {
        assert!(!shown.contains("198.51.100.7"), "{shown}");
        assert!(!shown.contains("5004"), "{shown}");
    }
}

#[test]
fn sip_status_maps_body_errors_to_400_and_refusals_to_488() {
    assert_eq!(SdpError::Malformed { line: 1 }.sip_status(), 400);
    assert_eq!(SdpError::NotText.sip_status(), 400);
    assert_eq!(SdpError::NoCommonCodec.sip_status(), 488);
    assert_eq!(SdpError::PortZero.sip_status(), 488);
}

/// A tiny deterministic generator (xorshift) so the fuzz loop needs no extra crate.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_mutations_never_panic() {
    let base = offer_with(
        "m=audio 5004 RTP/AVP 0 8 101",
        &["a=rtpmap:101 telephone-event/8000", "a=ptime:20"],
    );
    let alphabet = b"v=0mcaIN P46:/ \r\n.1089-";
    let mut st = 0x9E37_79B9_7F4A_7C15_u64;
    let mut ok = 0;
    for _ in 0..20_000 {
        let mut input = base.clone();
        let edits = xorshift(&mut st) % 6 + 1;
        for _ in 0..edits {
            let r = xorshift(&mut st);
            let pos = (r as usize >> 8) % (input.len() + 1);
            match r % 4 {
                0 if pos < input.len() => {
                    input.remove(pos);
                }
                1 => input.insert(pos, alphabet[(r >> 40) as usize % alphabet.len()]),
                2 if pos < input.len() => input[pos] = (r >> 32) as u8,
                _ => input.truncate(pos),
            }
        }
        if negotiate(&input, LOCAL).is_ok() {
            ok += 1;
        }
    }
    // Some mutants must still parse, or the loop only exercised the first check.
    assert!(ok > 100, "only {ok} mutants parsed");
}
