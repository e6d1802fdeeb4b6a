//! Abuse resistance through the built daemon on loopback: no RTP to an SDP address outside the
//! allowed media networks, the per-source rate limit (trusted and untrusted), one stateless
//! answer per request for untrusted sources, and scanner User-Agents dropped unanswered. Extra
//! loopback addresses (127.0.0.2, .3, .99) stand for other hosts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::uac::Uac;
use common::*;

const METRICS: &str = "[ops]\nmetrics_listen = \"127.0.0.1:0\"\n";
const BASE_ACL: &str = r#"allow = ["127.0.0.0/8", "::1/128"]"#;

/// The base config with `acl` instead of its `[sip.acl]` lines and `media` added to `[media]`.
fn start(acl: &str, media: &str, extra: &str) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = base_config(&dir.path().join("var"));
    assert!(base.contains(BASE_ACL) && base.contains("[media]\n"));
    let config = base
        .replace(BASE_ACL, acl)
        .replace("[media]\n", &format!("[media]\n{media}\n"));
    Daemon::start_with(dir, &format!("{config}\n{METRICS}\n{extra}"))
}

/// The value of a metric line (`name{labels}` exactly) in the daemon's exposition.
fn metric(daemon: &Daemon, series: &str) -> f64 {
    let text = daemon.http_get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// A raw SIP peer on `ip` (a loopback address).
fn peer(ip: &str) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("bind peer");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    socket
}

fn options(from: &UdpSocket, branch: &str, user_agent: &str) -> String {
    let local = from.local_addr().unwrap();
    format!(
        "OPTIONS sip:{QUIET_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch}\r\n\
         From: <sip:probe@{ip}>;tag=p{branch}\r\nTo: <sip:{QUIET_NUMBER}@127.0.0.1>\r\nCall-ID: probe-{branch}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nUser-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n",
        ip = local.ip(),
    )
}

/// Responses arriving at `socket` until it has been quiet for `quiet` (bounded at 10 s).
fn responses(socket: &UdpSocket, quiet: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut last = Instant::now();
    let hard_stop = Instant::now() + Duration::from_secs(10);
    while last.elapsed() < quiet && Instant::now() < hard_stop {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            last = Instant::now();
        }
    }
    got
}

/// The status of the first final response carrying `call_id`, or 0 if none came within 5 s.
fn final_for(socket: &UdpSocket, call_id: &str) -> u16 {
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let status = text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
        if let Some(status) = status.filter(|s| *s >= 200)
            && text.contains(call_id)
        {
            return status;
        }
    }
    0
}

fn send(socket: &UdpSocket, to: SocketAddr, msg: &str) {
    socket.send_to(msg.as_bytes(), to).expect("send");
}

#[test]
fn an_sdp_address_outside_the_allowed_networks_gets_no_rtp_and_the_call_goes_on_without_notice() {
    let daemon = start(BASE_ACL, r#"allowed_networks = ["127.0.0.1/32"]"#, "");
    // Signalling from 127.0.0.1 (inside the ACL), SDP naming 127.0.0.99: the victim.
    let spoofed = Uac::with_media_ip(daemon.addr, POOL_NUMBER, "127.0.0.99");
    let victim = spoofed.receive(Duration::from_millis(500));
    spoofed.invite("0 101");
    let statuses = spoofed.invite_statuses();
    assert_eq!(
        statuses,
        [100, 302],
        "no 183: the campaign's without-SDP behaviour (skip)"
    );
    spoofed.ack();
    std::thread::sleep(Duration::from_millis(2 * ANNOUNCEMENT_MS));
    assert!(
        victim.finish().is_empty(),
        "not one RTP packet may reach 127.0.0.99"
    );
    assert_eq!(
        metric(
            &daemon,
            "calltrackd_rtp_destinations_refused_total{reason=\"outside_networks\"}"
        ),
        1.0
    );
    let events = daemon.wait_events(2);
    assert!(events_of_type(&events, "call.disclosed").is_empty());

    // The same call with its media on 127.0.0.1 hears the announcement: the refusal above was
    // the address, not a broken flow.
    let caller = Uac::new(daemon.addr, POOL_NUMBER);
    let rtp = caller.receive(Duration::from_millis(300));
    caller.invite("0 101");
    caller.expect(183, "INVITE");
    caller.expect(302, "INVITE");
    caller.ack();
    assert!(!rtp.finish().is_empty());
}

#[test]
fn one_signalling_source_holds_at_most_its_stream_cap_and_another_source_still_gets_media() {
    let daemon = start(BASE_ACL, "max_streams_per_source = 1", "");
    // The first call from 127.0.0.1 holds the one stream for its 2 s announcement.
    let first = Uac::new(daemon.addr, LONG_NUMBER);
    let first_rtp = first.receive(Duration::from_millis(500));
    first.invite("0 101");
    first.expect(183, "INVITE");
    // A second call from the same source while it plays: no 183, no RTP, routed without notice.
    let second = Uac::new(daemon.addr, POOL_NUMBER);
    let second_rtp = second.receive(Duration::from_millis(500));
    second.invite("0 101");
    assert_eq!(
        second.invite_statuses(),
        [100, 302],
        "over the source's cap"
    );
    second.ack();
    // The same moment from another trunk peer (127.0.0.2): its own cap, so it hears the notice.
    let other = Uac::on(daemon.addr, POOL_NUMBER, "127.0.0.2", "127.0.0.2");
    let other_rtp = other.receive(Duration::from_millis(300));
    other.invite("0 101");
    other.expect(183, "INVITE");
    other.expect(302, "INVITE");
    other.ack();
    first.expect(302, "INVITE");
    first.ack();
    assert!(!first_rtp.finish().is_empty());
    assert!(!other_rtp.finish().is_empty());
    assert!(second_rtp.finish().is_empty(), "no RTP past the cap");
    assert_eq!(
        metric(
            &daemon,
            "calltrackd_rtp_destinations_refused_total{reason=\"source_cap\"}"
        ),
        1.0
    );
    // Once the first stream ended, the source's slot is free again.
    let again = Uac::new(daemon.addr, POOL_NUMBER);
    again.invite("0 101");
    again.expect(183, "INVITE");
    again.expect(302, "INVITE");
    again.ack();
}

#[test]
fn by_default_media_may_go_only_to_the_acl_networks() {
    let daemon = start(r#"allow = ["127.0.0.1/32"]"#, "", "");
    let uac = Uac::with_media_ip(daemon.addr, POOL_NUMBER, "127.0.0.99");
    let rtp = uac.receive(Duration::from_millis(500));
    uac.invite("0 101");
    assert_eq!(uac.invite_statuses(), [100, 302]);
    uac.ack();
    std::thread::sleep(Duration::from_millis(2 * ANNOUNCEMENT_MS));
    assert!(rtp.finish().is_empty());
}

#[test]
fn a_burst_above_the_limit_from_one_source_is_dropped_while_another_sources_call_succeeds() {
    let daemon = start(
        BASE_ACL,
        "",
        "[sip.limits]\ntrusted_per_second = 5\ntrusted_burst = 10\n",
    );
    let flood = peer("127.0.0.2");
    for i in 0..200 {
        send(
            &flood,
            daemon.addr,
            &options(&flood, &format!("f{i}"), "Asterisk"),
        );
    }
    let answered = responses(&flood, Duration::from_millis(500)).len();
    assert!(
        (10..=12).contains(&answered),
        "burst of 10 plus what 5/s refills while sending: {answered}"
    );
    assert!(
        metric(
            &daemon,
            "calltrackd_sip_rate_limited_total{source=\"trusted\"}"
        ) >= 188.0
    );
    // Meanwhile 127.0.0.1 has its own bucket: its call goes through.
    let uac = Uac::new(daemon.addr, QUIET_NUMBER);
    uac.invite("0");
    uac.expect(302, "INVITE");
    uac.ack();
}

#[test]
fn an_untrusted_source_gets_one_403_per_request_no_retransmission_and_at_most_pikes_rate() {
    let daemon = start("allow = [\"127.0.0.1/32\"]\non_deny = \"reject\"", "", "");
    let outsider = peer("127.0.0.3");
    let invite = format!(
        "INVITE sip:{POOL_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-out1\r\n\
         From: <sip:x@127.0.0.3>;tag=o1\r\nTo: <sip:{POOL_NUMBER}@127.0.0.1>\r\nCall-ID: out-1\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        local = outsider.local_addr().unwrap()
    );
    send(&outsider, daemon.addr, &invite);
    // T1 is 500 ms: a Timer G retransmission would come at 0.5 s and 1.5 s.
    let got = responses(&outsider, Duration::from_millis(2000));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("SIP/2.0 403 "), "{}", got[0]);
    assert!(!got[0].contains("100 Trying"));

    for i in 0..40 {
        send(
            &outsider,
            daemon.addr,
            &options(&outsider, &format!("o{i}"), "Asterisk"),
        );
    }
    let answered = responses(&outsider, Duration::from_millis(500));
    assert!(
        (16..=17).contains(&answered.len()),
        "16 per 2 s (Kamailio pike's default): {}",
        answered.len()
    );
    assert!(answered.iter().all(|r| r.starts_with("SIP/2.0 403 ")));
    assert!(
        metric(
            &daemon,
            "calltrackd_sip_rate_limited_total{source=\"untrusted\"}"
        ) >= 23.0
    );
}

#[test]
fn a_friendly_scanner_options_gets_no_answer_and_is_counted() {
    let daemon = start(BASE_ACL, "", "");
    let probe = peer("127.0.0.1");
    send(
        &probe,
        daemon.addr,
        &options(&probe, "scan1", "friendly-scanner"),
    );
    assert!(responses(&probe, Duration::from_millis(1000)).is_empty());
    assert_eq!(
        metric(&daemon, "calltrackd_sip_scanners_dropped_total"),
        1.0
    );
    // The same request from a real user agent is answered.
    send(
        &probe,
        daemon.addr,
        &options(&probe, "real1", "Asterisk PBX"),
    );
    let got = responses(&probe, Duration::from_millis(500));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("SIP/2.0 200 "), "{}", got[0]);
    assert!(
        !daemon.log().contains("friendly-scanner"),
        "no header text in the log"
    );
}

#[test]
fn stream_connections_and_messages_draw_from_the_same_trusted_bucket() {
    use std::io::{Read, Write};
    let daemon = start(
        BASE_ACL,
        "",
        "[sip.limits]\ntrusted_per_second = 0.1\ntrusted_burst = 4\n",
    );
    let tcp: SocketAddr = daemon
        .listening("tcp")
        .and_then(|a| a.split(',').next().map(str::to_owned))
        .and_then(|a| a.trim_matches('"').parse().ok())
        .expect("a TCP listener");
    // Each connection takes a token at accept and each message one more.
    let ask = |branch: &str| -> Vec<u8> {
        let mut stream = std::net::TcpStream::connect(tcp).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let local = stream.local_addr().unwrap();
        let msg = format!(
            "OPTIONS sip:{QUIET_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-{branch}\r\n\
             From: <sip:probe@127.0.0.1>;tag=t{branch}\r\nTo: <sip:{QUIET_NUMBER}@127.0.0.1>\r\nCall-ID: tcp-{branch}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        // A refused connection may already be closed: the write may fail, the read sees EOF.
        let _ = stream.write_all(msg.as_bytes());
        let mut buf = vec![0u8; 4096];
        match stream.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    };
    for branch in ["a", "b"] {
        let answer = ask(branch);
        assert!(
            answer.starts_with(b"SIP/2.0 200 "),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert!(
        ask("c").is_empty(),
        "the third connection is over the burst"
    );
    assert!(
        metric(
            &daemon,
            "calltrackd_sip_rate_limited_total{source=\"trusted\"}"
        ) >= 1.0
    );
}

#[test]
fn unacknowledged_finals_over_the_byte_budget_make_new_invites_503() {
    // The smallest budget the config takes, put into the base config's [sip] table.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = base_config(&dir.path().join("var"))
        .replace("[sip]\n", "[sip]\nmax_transaction_bytes = 65536\n");
    // T1 = 4 s puts Timer H at 256 s: however slow the machine, no retained 302 expires during
    // the 60 INVITEs, so the only way out of the budget would be a bug.
    let timers = "[sip.timers]\nt1_ms = 4000\nt2_ms = 8000\nt4_ms = 5000\n";
    let daemon = Daemon::start_with(dir, &format!("{config}\n{METRICS}\n{timers}"));
    let caller = peer("127.0.0.1");
    let local = caller.local_addr().unwrap();
    // Padding in an echoed header makes each retained 302 about 1.5 KB: some 45 pass 64 KiB.
    let pad = "x".repeat(1500);
    let mut finals = Vec::new();
    for i in 0..60 {
        let invite = format!(
            "INVITE sip:{QUIET_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-b{i}\r\n\
             From: <sip:x@127.0.0.1>;tag=b{i}\r\nTo: <sip:{QUIET_NUMBER}@127.0.0.1;pad={pad}>\r\nCall-ID: budget-{i}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        send(&caller, daemon.addr, &invite);
        // Never ACKed: each 302 stays in the table until Timer H. Timer G resends earlier 302s
        // meanwhile, so wait for this INVITE's own final rather than for a quiet socket.
        finals.push(final_for(&caller, &format!("Call-ID: budget-{i}\r\n")));
    }
    let first_503 = finals.iter().position(|s| *s == 503).expect("a 503");
    assert!(
        (25..=55).contains(&first_503),
        "about 64 KiB of 1.5 KB responses: {finals:?}"
    );
    assert!(finals[..first_503].iter().all(|s| *s == 302), "{finals:?}");
    assert!(
        finals[first_503..].iter().all(|s| *s == 503),
        "nothing is freed before Timer H: {finals:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(metric(&daemon, "calltrackd_sip_transaction_budget_refusals_total") >= 1.0);
}
