//! `{:?}` and `{:#?}` of every value that holds caller data show structure only (issue #15):
//! a stray debug print in a log line or a panic message must not leak a number, a name, an
//! address, a Call-ID or header text.

use std::net::SocketAddr;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{TimeZone, Utc};

use crate::call::recorder::CdrFacts;
use crate::call::{CallerIdentity, Disposition, E164};
use crate::cdr::quarantine;
use crate::sip::edge::{Arrival, ArrivalTransport};
use crate::sip::reliable::Due;
use crate::sip::stats::StreamLabel;
use crate::sip::{FramingError, Message, NameAddr, Uri, Via, frame_datagram, parse};

/// What no debug output may contain. The number also appears without `+` and in national form.
const RAW: &[&str] = &[
    "+4917612345678",
    "4917612345678",
    "017612345678",
    "Erika",
    "Mustermann",
    "secret-call-id",
    "10.9.8.7",
    "SecretPhone",
    "z9hG4bK-secret",
    "tag-secret",
];

const INVITE: &str = "INVITE sip:+4930123456@calltrack.example;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.9.8.7:5060;branch=z9hG4bK-secret;received=10.9.8.7;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Erika Mustermann\" <sip:+4917612345678@10.9.8.7;user=phone>;tag=tag-secret\r\n\
To: <tel:+4930123456>\r\n\
Call-ID: secret-call-id@10.9.8.7\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:017612345678@10.9.8.7:5060>\r\n\
P-Asserted-Identity: \"Erika Mustermann\" <tel:+4917612345678>\r\n\
User-Agent: SecretPhone/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 7\r\n\
\r\n\
v=0\r\n\r\n";

const RESPONSE: &str = "SIP/2.0 180 Ringing for Erika Mustermann\r\n\
Via: SIP/2.0/UDP 10.9.8.7:5060;branch=z9hG4bK-secret\r\n\
From: \"Erika Mustermann\" <sip:+4917612345678@10.9.8.7>;tag=tag-secret\r\n\
To: <tel:+4930123456>;tag=ours\r\n\
Call-ID: secret-call-id@10.9.8.7\r\n\
CSeq: 1 INVITE\r\n\
Server: SecretPhone/1.0\r\n\
Content-Length: 0\r\n\
\r\n";

#[track_caller]
fn assert_redacted(what: &str, value: &impl std::fmt::Debug) {
    for shown in [format!("{value:?}"), format!("{value:#?}")] {
        for raw in RAW {
            assert!(!shown.contains(raw), "{what} shows {raw:?}");
        }
    }
}

fn request() -> crate::sip::Request {
    let Message::Request(r) = parse(Bytes::from_static(INVITE.as_bytes())).unwrap() else {
        panic!("not a request")
    };
    r
}

#[test]
fn parsed_request_and_its_parts_debug_without_raw_values() {
    let r = request();
    // The fixture really carries the values, so the assertions below test something.
    assert_eq!(r.call_id(), "secret-call-id@10.9.8.7");
    assert_eq!(r.from().display.as_deref(), Some("Erika Mustermann"));

    assert_redacted("Message", &Message::Request(r.clone()));
    assert_redacted("Request", &r);
    assert_redacted("Headers", &r.headers);
    assert_redacted("Header", &r.headers.0[0]);
    assert_redacted("Uri (request)", &r.uri);
    assert_redacted("NameAddr (From)", r.from());
    assert_redacted("Uri (From)", &r.from().uri);
    assert_redacted("Params (From)", &r.from().params);
    assert_redacted("NameAddr (To)", r.to());
    assert_redacted("Contacts", &r.contacts());
    assert_redacted("Vias", &r.vias());
    assert_redacted("ViaParams", &r.vias()[0].params);
    assert_redacted("Host", &r.vias()[0].sent_by_host);
    assert_redacted("ReplyHeaders", r.reply_headers());
    assert_redacted("CSeq", r.cseq());
}

#[test]
fn redacted_debug_still_shows_structure() {
    let shown = format!("{:?}", request());
    for part in [
        "INVITE",
        "Call-ID",
        "User-Agent",
        "display: true",
        "body_len: 7",
    ] {
        assert!(shown.contains(part), "{part} missing from {shown}");
    }
}

#[test]
fn values_parsed_alone_debug_without_raw_values() {
    let pai = NameAddr::parse("\"Erika Mustermann\" <tel:+4917612345678;phone-context=10.9.8.7>")
        .unwrap();
    assert_redacted("NameAddr (tel)", &pai);
    let uri = Uri::parse("sips:+4917612345678:pw-Erika@[::ffff:10.9.8.7]:5061?Subject=Erika");
    assert_redacted("Uri (sips)", &uri.unwrap());
    let via = Via::parse("SIP/2.0/TCP secret-call-id.example;branch=z9hG4bK-secret;maddr=10.9.8.7");
    assert_redacted("Via (tcp)", &via.unwrap());
}

#[test]
fn parsed_response_debugs_without_raw_values() {
    let Message::Response(r) = parse(Bytes::from_static(RESPONSE.as_bytes())).unwrap() else {
        panic!("not a response")
    };
    assert_eq!(r.call_id(), "secret-call-id@10.9.8.7");
    assert_redacted("Response", &r);
    assert!(format!("{r:?}").contains("status: 180"));
}

#[test]
fn parse_and_framing_errors_debug_without_raw_bytes() {
    let bad = INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE");
    let e = parse(Bytes::from(bad)).unwrap_err();
    assert!(e.reply.is_some());
    assert_redacted("ParseError", &e);

    let truncated = INVITE.replace("Content-Length: 7", "Content-Length: 80");
    let e = frame_datagram(truncated.as_bytes(), 65_535).unwrap_err();
    assert!(matches!(e, FramingError::Truncated { .. }));
    assert_redacted("FramingError::Truncated", &e);

    let bad_length = INVITE.replace("Content-Length: 7", "Content-Length: -1");
    let e = frame_datagram(bad_length.as_bytes(), 65_535).unwrap_err();
    assert!(matches!(e, FramingError::BadLength { .. }));
    assert_redacted("FramingError::BadLength", &e);

    let e = frame_datagram(INVITE.as_bytes(), 100).unwrap_err();
    assert!(matches!(e, FramingError::TooLarge { .. }));
    assert_redacted("FramingError::TooLarge", &e);
}

#[test]
fn arrival_and_retransmission_debug_without_addresses_or_bytes() {
    let (sender, _receiver) = tokio::sync::mpsc::channel(1);
    let arrival = Arrival {
        source: SocketAddr::from_str("10.9.8.7:5060").unwrap(),
        local: SocketAddr::from_str("10.9.8.7:5061").unwrap(),
        transport: ArrivalTransport::Stream {
            kind: StreamLabel::Tcp,
            sender,
        },
    };
    assert_redacted("Arrival", &arrival);
    assert_redacted(
        "Due::Retransmit",
        &Due::Retransmit(Bytes::from_static(RESPONSE.as_bytes())),
    );
}

#[test]
fn cdr_facts_and_quarantine_entry_debug_without_raw_values() {
    let caller = CallerIdentity::Number(E164::from_str("+4917612345678").unwrap());
    let tracking = E164::from_str("+4930123456").unwrap();
    let start = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let facts = CdrFacts {
        record_key: "feed/secret-call-id",
        call_id: Some("secret-call-id@10.9.8.7"),
        caller: &caller,
        campaign_id: "spring",
        tracking_number: &tracking,
        start,
        answered: Some(start),
        ended: Some(start),
        duration_seconds: 0,
        disposition: Disposition::Answered,
        tolerance: chrono::TimeDelta::seconds(5),
    };
    assert_redacted("CdrFacts", &facts);

    let entry = quarantine::Entry {
        file: "a.csv",
        line: 3,
        reason: "bad start time",
        raw: "1,secret-call-id@10.9.8.7,+4917612345678,Erika Mustermann",
    };
    assert_redacted("quarantine::Entry", &entry);
}
