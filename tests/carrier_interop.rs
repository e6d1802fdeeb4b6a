//! What IMS and SIP-I carriers send, against the built daemon: reliable provisional responses
//! (RFC 3262) with PRACK, the SDP inside a multipart body beside ISUP, the media-security
//! agreement, and the dialog headers of the 183 (Contact, Record-Route).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::uac::Uac;
use common::*;

fn rseq_of(response: &str) -> Option<u32> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("RSeq:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_sip_i_trunk_requiring_100rel_gets_a_reliable_183_prack_200_then_302() {
    let daemon = Daemon::start("[ops]\nmetrics_listen = \"127.0.0.1:0\"\n");
    for transport in ["u1", "t1"] {
        let out = sipp(
            "uac_prack_sip_i.xml",
            transport,
            daemon.addr,
            POOL_NUMBER,
            &[],
        );
        assert_sipp_ok(&out, &format!("PRACK scenario over {transport}"));
    }
    let events = daemon.wait_events(6);
    let kinds: Vec<_> = events.iter().map(|e| e["event_type"].clone()).collect();
    assert_eq!(
        kinds,
        [
            "call.offered",
            "call.disclosed",
            "call.routed",
            "call.offered",
            "call.disclosed",
            "call.routed"
        ]
    );
    assert!(
        events_of_type(&events, "call.disclosed")
            .iter()
            .all(|e| e["disclosure"] == "played" && e["complete"] == true),
        "the SDP part of the multipart body was answered and the notice played: {events:?}"
    );
    let metrics = daemon.http_get("/metrics");
    assert!(
        metrics.contains("calltrackd_sip_requests_total{method=\"PRACK\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("calltrackd_sip_prack_timeouts_total 0"));
}

#[test]
fn an_unacknowledged_reliable_183_is_retransmitted_then_the_call_ends_with_500() {
    // T1 = 20 ms: the 64×T1 bound (1.28 s) ends the call inside the 2 s announcement.
    let daemon = Daemon::start("[sip.timers]\nt1_ms = 20\nt2_ms = 4000\nt4_ms = 5000\n");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    let started = Instant::now();
    uac.invite_with("0 101", "Require: 100rel\r\n");
    let first = uac.expect(183, "INVITE");
    let rseq = rseq_of(&first).expect("a reliable 183 has RSeq");
    assert!(first.contains("Require: 100rel"), "{first}");
    let mut copies = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let final_status = loop {
        assert!(Instant::now() < deadline, "no final response");
        let Some((status, method, text)) = uac.response() else {
            continue;
        };
        if status == 183 && method == "INVITE" {
            assert_eq!(
                rseq_of(&text),
                Some(rseq),
                "a retransmission keeps its RSeq"
            );
            copies += 1;
        } else if status >= 200 && method == "INVITE" {
            break status;
        }
    };
    uac.ack();
    assert_eq!(
        final_status, 500,
        "RFC 3262 §3: no PRACK within 64×T1 is a 5xx"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "ended by the PRACK bound, not by the announcement's end"
    );
    assert!(
        (5..=6).contains(&copies),
        "retransmitted at T1, 2T1, ... 32T1: {copies}"
    );
    let events = daemon.wait_events(3);
    let kinds: Vec<_> = events.iter().map(|e| e["event_type"].clone()).collect();
    assert_eq!(kinds, ["call.offered", "call.disclosed", "call.abandoned"]);
    assert_eq!(events[1]["complete"], false);
    assert_eq!(events[1]["outcome"], "unacknowledged");
}

#[test]
fn a_prack_stops_the_retransmissions_and_a_stray_prack_gets_481() {
    // T1 = 200 ms and a 2 s announcement: unacknowledged, the 183 would go out again at 0.2,
    // 0.6 and 1.4 s before the 302.
    let daemon = Daemon::start("[sip.timers]\nt1_ms = 200\nt2_ms = 4000\nt4_ms = 5000\n");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    uac.invite_with("0 101", "Supported: 100rel\r\n");
    let first = uac.expect(183, "INVITE");
    let rseq = rseq_of(&first).expect("Supported: 100rel is enough for a reliable 183");
    uac.prack(rseq + 7, 2);
    uac.expect(481, "PRACK");
    uac.prack(rseq, 3);
    uac.expect(200, "PRACK");
    let mut late_copies = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let redirect = loop {
        assert!(Instant::now() < deadline, "no 302");
        let Some((status, method, text)) = uac.response() else {
            continue;
        };
        match (status, method.as_str()) {
            (183, "INVITE") => late_copies += 1,
            (302, "INVITE") => break text,
            _ => {}
        }
    };
    uac.ack();
    assert!(
        redirect.contains("Contact: <tel:+493055509002>"),
        "{redirect}"
    );
    // At most one copy can cross the PRACK on the wire; none may follow the 200.
    assert!(
        late_copies <= 1,
        "{late_copies} retransmissions after PRACK"
    );
}

#[test]
fn without_100rel_the_183_is_unreliable_and_carries_the_dialog_headers() {
    let dir = tempfile::tempdir().expect("dir");
    let config = base_config(&dir.path().join("var")).replace(
        "[sip]\n",
        "[sip]\nreliable_provisional = \"when-required\"\n",
    );
    let daemon = Daemon::start_with(dir, &config);
    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    uac.invite_with(
        "0 101",
        "Supported: 100rel\r\nRecord-Route: <sip:p1.carrier.test;lr>\r\nRecord-Route: <sip:p2.carrier.test;lr>\r\n",
    );
    let progress = uac.expect(183, "INVITE");
    assert_eq!(
        rseq_of(&progress),
        None,
        "when-required: Supported alone is not enough"
    );
    assert!(
        progress.contains(&format!("Contact: <sip:127.0.0.1:{}>", daemon.port())),
        "{progress}"
    );
    let rr: Vec<_> = progress
        .lines()
        .filter(|l| l.starts_with("Record-Route:"))
        .collect();
    assert_eq!(
        rr,
        [
            "Record-Route: <sip:p1.carrier.test;lr>",
            "Record-Route: <sip:p2.carrier.test;lr>"
        ],
        "RFC 3261 §12.1.1: copied in order"
    );
    uac.expect(302, "INVITE");
    uac.ack();
}

#[test]
fn multipart_bodies_with_a_part_we_cannot_take_are_refused_415() {
    let daemon = Daemon::start("");
    let body = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b\r\nContent-Type: application/vnd.secret\r\nContent-Disposition: render;handling=required\r\n\r\nx\r\n--b--\r\n";
    let invite = format!(
        "INVITE sip:{POOL_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKmp415;rport\r\nFrom: <sip:+4917612345678@carrier.test>;tag=m\r\nTo: <sip:{POOL_NUMBER}@127.0.0.1>\r\nCall-ID: mp415@carrier.test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:c@127.0.0.1>\r\nContent-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, text) =
        udp_exchange(daemon.addr, invite.as_bytes(), Duration::from_secs(5)).expect("answer");
    assert_eq!(status, 415);
    assert!(
        text.contains("Accept: application/sdp, multipart/mixed"),
        "{text}"
    );
    assert!(daemon.events().is_empty());
}
