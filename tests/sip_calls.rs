//! The carrier's view: sipp places calls over UDP and TCP against the built daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// One announced, redirected call: offered, disclosed, routed.
fn assert_redirect_events(events: &[serde_json::Value]) {
    let offered = events_of_type(events, "call.offered");
    let disclosed = events_of_type(events, "call.disclosed");
    let routed = events_of_type(events, "call.routed");
    assert_eq!(offered.len(), 1, "one call.offered: {events:#?}");
    assert_eq!(disclosed.len(), 1, "one call.disclosed: {events:#?}");
    assert_eq!(routed.len(), 1, "one call.routed: {events:#?}");
    for e in [offered[0], disclosed[0], routed[0]] {
        assert_eq!(e["schema_version"], 1);
        assert_eq!(e["campaign_id"], POOL_CAMPAIGN);
        assert_eq!(e["tracking_number"], POOL_NUMBER);
        assert_eq!(e["caller_withheld"], false);
        assert_eq!(e["caller_region"], "+49");
        assert_eq!(e["disclosure"], "played");
        assert_eq!(e["consent"], "informed");
        assert_eq!(e["caller_pseudonym"].as_str().map(str::len), Some(32));
        assert!(e["key_id"].as_str().is_some_and(|k| !k.is_empty()));
        assert_eq!(
            e["call_key"], offered[0]["call_key"],
            "all events name the same call"
        );
    }
    assert_eq!(disclosed[0]["announcement_id"], "notice");
    assert_eq!(disclosed[0]["announcement_version"], "test-1");
    assert_eq!(disclosed[0]["hook"], "early-media");
    assert_eq!(disclosed[0]["complete"], true);
    assert_ne!(offered[0]["event_id"], routed[0]["event_id"]);
}

#[test]
fn invite_for_pool_number_is_redirected_over_udp_and_recorded() {
    let daemon = Daemon::start("");
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "INVITE -> 100 -> 302 -> ACK over UDP");
    assert_redirect_events(&daemon.wait_events(3));
}

#[test]
fn invite_for_pool_number_is_redirected_over_tcp_and_recorded() {
    let daemon = Daemon::start("");
    let out = sipp("uac_redirect.xml", "t1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "INVITE -> 100 -> 302 -> ACK over TCP");
    assert_redirect_events(&daemon.wait_events(3));
}

#[test]
fn event_times_are_whole_seconds_by_default() {
    let daemon = Daemon::start("");
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "INVITE -> 100 -> 302 -> ACK over UDP");
    for e in daemon.wait_events(3) {
        let t = e["occurred_at"].as_str().unwrap();
        assert!(t.ends_with(".000Z"), "{t} is not whole seconds");
    }
}

#[test]
fn event_times_are_whole_minutes_when_configured() {
    let daemon = Daemon::start("[privacy]\ntime_precision = \"minute\"\n");
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "INVITE -> 100 -> 302 -> ACK over UDP");
    for e in daemon.wait_events(3) {
        let t = e["occurred_at"].as_str().unwrap();
        assert!(t.ends_with(":00.000Z"), "{t} is not whole minutes");
    }
}

#[test]
fn national_form_of_a_pool_number_is_recognised() {
    let daemon = Daemon::start("");
    let out = sipp(
        "uac_redirect.xml",
        "u1",
        daemon.addr,
        POOL_NUMBER_NATIONAL,
        &[],
    );
    assert_sipp_ok(&out, "national-form R-URI redirected");
    assert_redirect_events(&daemon.wait_events(3));
}

#[test]
fn unknown_number_gets_404_and_no_event() {
    let daemon = Daemon::start("");
    for transport in ["u1", "t1"] {
        let out = sipp(
            "uac_not_found.xml",
            transport,
            daemon.addr,
            UNKNOWN_NUMBER,
            &[],
        );
        assert_sipp_ok(&out, "INVITE -> 404 -> ACK");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(daemon.events().is_empty());
}

#[test]
fn options_ping_gets_200_over_udp_and_tcp() {
    let daemon = Daemon::start("");
    for transport in ["u1", "t1"] {
        let out = sipp("uac_options.xml", transport, daemon.addr, "ping", &[]);
        assert_sipp_ok(&out, "OPTIONS -> 200");
    }
}

#[test]
fn retransmitted_invite_yields_one_event_pair() {
    // A raw socket plays the carrier here: sipp cannot send a copy before reading the answer.
    let daemon = Daemon::start("");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let invite = format!(
        "INVITE sip:{QUIET_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKrtx1\r\nFrom: <sip:+4917612345678@127.0.0.1>;tag=rtx\r\nTo: <sip:{QUIET_NUMBER}@127.0.0.1>\r\nCall-ID: rtx-call\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    // The carrier's copy goes out before any answer, and once more after the final.
    socket.send_to(invite.as_bytes(), daemon.addr).unwrap();
    socket.send_to(invite.as_bytes(), daemon.addr).unwrap();
    let mut finals = Vec::new();
    let mut buf = [0u8; 4096];
    while finals.len() < 2 {
        let (n, _) = socket
            .recv_from(&mut buf)
            .expect("responses to both copies");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("SIP/2.0 302") {
            finals.push(text);
            if finals.len() == 1 {
                socket.send_to(invite.as_bytes(), daemon.addr).unwrap();
            }
        }
    }
    let to_of = |t: &str| t.lines().find(|l| l.starts_with("To:")).map(str::to_owned);
    assert_eq!(
        to_of(&finals[0]),
        to_of(&finals[1]),
        "the same 302, tag and all, resent"
    );
    let ack = invite
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 7 INVITE", "CSeq: 7 ACK")
        .replace(
            &format!("To: <sip:{QUIET_NUMBER}@127.0.0.1>"),
            to_of(&finals[0]).unwrap().as_str(),
        );
    socket.send_to(ack.as_bytes(), daemon.addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let events = daemon.events();
    assert_eq!(events.len(), 2, "three copies are one call: {events:#?}");
    assert_eq!(events_of_type(&events, "call.offered").len(), 1);
    assert_eq!(events_of_type(&events, "call.routed").len(), 1);
}

#[test]
fn cancel_during_the_announcement_gets_200_then_487_over_udp_and_tcp() {
    let daemon = Daemon::start("");
    for transport in ["u1", "t1"] {
        let out = sipp("uac_cancel.xml", transport, daemon.addr, LONG_NUMBER, &[]);
        assert_sipp_ok(&out, "INVITE -> 100 -> 183 -> CANCEL -> 200 -> 487 -> ACK");
    }
    let events = daemon.wait_events(6);
    assert_eq!(
        events_of_type(&events, "call.abandoned").len(),
        2,
        "{events:#?}"
    );
    assert!(
        events_of_type(&events, "call.routed").is_empty(),
        "a cancelled call is not routed"
    );
}

#[test]
fn cancel_without_a_matching_invite_gets_481() {
    let daemon = Daemon::start("");
    let cancel = "CANCEL sip:+493055501000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnomatch;rport\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:+493055501000@127.0.0.1>\r\nCall-ID: cancel-481\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (status, text) = udp_exchange(
        daemon.addr,
        cancel.as_bytes(),
        std::time::Duration::from_secs(3),
    )
    .expect("an answer");
    assert_eq!(status, 481);
    assert!(text.contains(";rport="), "rport filled in: {text}");
}

#[test]
fn many_calls_over_udp_each_produce_one_event_pair() {
    let daemon = Daemon::start("");
    let out = sipp(
        "uac_redirect.xml",
        "u1",
        daemon.addr,
        POOL_NUMBER,
        &["-m", "50", "-r", "50", "-l", "20"],
    );
    assert_sipp_ok(&out, "50 calls");
    let events = daemon.wait_events(150);
    assert_eq!(events_of_type(&events, "call.offered").len(), 50);
    assert_eq!(events_of_type(&events, "call.disclosed").len(), 50);
    assert_eq!(events_of_type(&events, "call.routed").len(), 50);
    let mut keys: Vec<&str> = events
        .iter()
        .filter_map(|e| e["call_key"].as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 50, "one call key per call");
}

#[test]
fn daemon_stops_cleanly_on_sigterm() {
    let mut daemon = Daemon::start("");
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn source_outside_the_acl_is_dropped_or_rejected_as_configured() {
    let options = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKacl1;rport\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: acl-test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(&dir.path().join("var")).replace("127.0.0.0/8", "192.0.2.0/24");
    let daemon = Daemon::start_with(dir, &config);
    let wait = std::time::Duration::from_millis(500);
    assert_eq!(
        udp_exchange(daemon.addr, options.as_bytes(), wait),
        None,
        "default: dropped"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = base_config(&dir.path().join("var"))
        .replace("127.0.0.0/8", "192.0.2.0/24")
        .replace("[sip.acl]", "[sip.acl]\non_deny = \"reject\"");
    let daemon = Daemon::start_with(dir, &config);
    let (status, _) = udp_exchange(daemon.addr, options.as_bytes(), wait).expect("a 403");
    assert_eq!(status, 403);
}

#[test]
fn ipv6_listener_answers_over_udp_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(&dir.path().join("var")).replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\", \"[::1]:0\"]",
    );
    let daemon = Daemon::start_with(dir, &config);
    let line = daemon
        .log()
        .lines()
        .find(|l| l.contains("Listening."))
        .unwrap()
        .to_owned();
    let v6: std::net::SocketAddr = line
        .split("udp=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.split(',').nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(v6.is_ipv6());
    let socket = std::net::UdpSocket::bind("[::1]:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let options = format!(
        "OPTIONS sip:[::1] SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{port};branch=z9hG4bKv6\r\nFrom: <sip:ping@[::1]>;tag=1\r\nTo: <sip:[::1]>\r\nCall-ID: v6-ping\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(options.as_bytes(), v6).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer over IPv6");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK"));
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(v6).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    tcp.write_all(
        options
            .replace("UDP", "TCP")
            .replace("v6-ping", "v6-ping-tcp")
            .replace("z9hG4bKv6", "z9hG4bKv6tcp")
            .as_bytes(),
    )
    .unwrap();
    let n = tcp
        .read(&mut buf)
        .unwrap_or_else(|e| panic!("{e}: {}", daemon.log()));
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK"));
}
