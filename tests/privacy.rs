//! Privacy is a feature: a caller's number, name, address and user agent must appear nowhere
//! outside the process: not in events, not in logs (at debug level), not in error text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Everything the caller's INVITEs carried that identifies them.
const FORBIDDEN: &[&str] = &[
    CALLER_DIGITS,
    CALLER_NAME,
    "Erika",
    CALLER_AGENT,
    "127.0.0.2",
];

fn assert_clean(what: &str, text: &str) {
    for needle in FORBIDDEN {
        assert!(
            !text.contains(needle),
            "{what} contains {needle:?}:\n{text}"
        );
    }
}

#[test]
fn caller_identity_appears_in_no_event_log_or_error() {
    let daemon = Daemon::start("[ops]\nmetrics_listen = \"127.0.0.1:0\"\n");
    // The carrier (sipp) sends from 127.0.0.2 so its address is as distinctive as the caller.
    let calls = [
        ("uac_redirect.xml", "u1", POOL_NUMBER),
        ("uac_redirect.xml", "t1", POOL_NUMBER),
        ("uac_not_found.xml", "u1", UNKNOWN_NUMBER),
    ];
    for (scenario, transport, number) in calls {
        let out = sipp_from("127.0.0.2", scenario, transport, daemon.addr, number);
        assert_sipp_ok(&out, scenario);
    }
    // A malformed message with the caller's data, so error paths are exercised too.
    let broken = format!(
        "INVITE sip:{POOL_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKbad;rport\r\nFrom: \"Erika Mustermann <sip:+49{CALLER_DIGITS}@127.0.0.2>;tag=1\r\nTo: <sip:{POOL_NUMBER}@127.0.0.1>\r\nCall-ID: bad\r\nCSeq: 1 INVITE\r\nUser-Agent: {CALLER_AGENT}/1\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, _) = udp_exchange(
        daemon.addr,
        broken.as_bytes(),
        std::time::Duration::from_secs(3),
    )
    .expect("400");
    assert_eq!(status, 400);

    let events = daemon.wait_events(6);
    assert_eq!(events.len(), 6, "two redirected calls, three events each");
    let outbox: String = events.iter().map(|e| e.to_string() + "\n").collect();
    assert_clean("the outbox", &outbox);
    for e in &events {
        assert!(
            e["caller_pseudonym"].is_string(),
            "callers are pseudonymized, not dropped"
        );
    }
    let log = daemon.log();
    assert!(log.contains("DEBUG"), "the log was captured at debug level");
    assert_clean("the debug log", &log);
    let metrics = daemon.http_get("/metrics");
    assert!(
        metrics.contains("calltrackd_calls_redirected_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("calltrackd_sip_responses_total{class=\"3xx\"} 2"),
        "{metrics}"
    );
    assert_clean("the metrics", &metrics);
    assert!(daemon.http_get("/health").ends_with("ok\n"));
}

#[test]
fn withheld_caller_gets_no_pseudonym() {
    let daemon = Daemon::start("");
    let invite = std::fs::read(repo().join("fixtures/sip/invite-anonymous-privacy.sip")).unwrap();
    let text = String::from_utf8(invite).unwrap();
    // Address the fixture's INVITE to the pool number of the test config.
    let ruri_user = text
        .split("INVITE sip:")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Responses must only ever go to loopback: point the fixture's Via at our socket.
    let via = format!("127.0.0.1:{}", socket.local_addr().unwrap().port());
    // Media too: the fixture's SDP address becomes a loopback one of the same length, so its
    // Content-Length stays right and no RTP leaves the machine.
    let text = text
        .replace(&ruri_user, POOL_NUMBER)
        .replace("198.51.100.40:5060", &via)
        .replace("198.51.100.41", "127.0.100.141");
    socket.send_to(text.as_bytes(), daemon.addr).unwrap();
    let events = daemon.wait_events(3);
    assert_eq!(events.len(), 3, "{events:#?}");
    for e in &events {
        assert_eq!(e["caller_withheld"], true);
        assert!(e.get("caller_pseudonym").is_none());
        assert!(e.get("caller_region").is_none());
    }
}
