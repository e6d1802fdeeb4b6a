//! The SIP details a carrier's interop engineer checks, through the real daemon on loopback:
//! CRLF keepalive pongs (RFC 5626 §4.4.1), responses over a new connection when the request's
//! closed (RFC 3261 §18.2.2), merged requests (§8.2.2.2), the outbox asked before the
//! announcement, RTP ports held after playback, and SIGHUP reloading the trunk ACL, media address
//! and log level with a call in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::uac::Uac;
use common::*;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tcp_addr(daemon: &Daemon) -> SocketAddr {
    daemon
        .listening("tcp")
        .and_then(|a| a.split(',').next().map(str::to_owned))
        .and_then(|a| a.trim_matches('"').parse().ok())
        .expect("a TCP listener")
}

/// Reads from `stream` until `needle` appears or `wait` passes; everything read.
fn read_until(stream: &mut TcpStream, needle: &str, wait: Duration) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains(needle) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&seen).to_string()
}

fn sdp(media_port: u16) -> String {
    format!(
        "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {media_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// An INVITE with SDP; `via` is the whole Via value.
fn invite(number: &str, via: &str, call_id: &str, media_port: u16) -> String {
    let body = sdp(media_port);
    format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:+4917612345678@127.0.0.1>;tag=conf\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:127.0.0.1>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_double_crlf_ping_gets_one_crlf_pong_and_the_connection_stays_usable() {
    let daemon = Daemon::start("");
    let mut tcp = TcpStream::connect(tcp_addr(&daemon)).unwrap();
    tcp.write_all(b"\r\n\r\n").unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut pong = [0u8; 8];
    let n = tcp.read(&mut pong).unwrap();
    assert_eq!(&pong[..n], b"\r\n", "one CRLF");
    let options = format!(
        "OPTIONS sip:{POOL_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-ping\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{POOL_NUMBER}@127.0.0.1>\r\nCall-ID: ping@conf\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(options.as_bytes()).unwrap();
    let answer = read_until(&mut tcp, "\r\n\r\n", Duration::from_secs(3));
    assert!(answer.starts_with("SIP/2.0 200"), "{answer:?}");
    let metrics_free_log = daemon.log();
    assert!(
        !metrics_free_log.contains("framing error"),
        "a ping is not an error"
    );
}

#[test]
fn a_response_whose_connection_closed_goes_over_a_new_one_to_the_via() {
    let _serial = serial();
    let daemon = Daemon::start("");
    // The carrier's listener, named in the Via's sent-by; the request comes from another port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media_port = media.local_addr().unwrap().port();
    let mut tcp = TcpStream::connect(tcp_addr(&daemon)).unwrap();
    let via = format!("SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK-redial");
    tcp.write_all(invite(LONG_NUMBER, &via, "redial@conf", media_port).as_bytes())
        .unwrap();
    let early = read_until(&mut tcp, "SIP/2.0 183", Duration::from_secs(5));
    assert!(early.contains("SIP/2.0 183"), "{early}");
    drop(tcp);
    // The 302 after the announcement cannot use the closed connection.
    listener.set_nonblocking(false).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let text = read_until(&mut stream, "SIP/2.0 302", Duration::from_secs(5));
            let _ = tx.send(text);
        }
    });
    let text = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the daemon opened a connection to the Via's sent-by");
    assert!(text.contains("SIP/2.0 302"), "{text}");
    assert!(text.contains("branch=z9hG4bK-redial"), "{text}");
    let events = daemon.wait_events(3);
    assert_eq!(
        events_of_type(&events, "call.routed").len(),
        1,
        "{events:#?}"
    );
    let metrics = daemon.log();
    assert!(!metrics.contains("Response not delivered"), "{metrics}");
}

#[test]
fn the_same_invite_by_another_branch_is_482_and_makes_no_second_call() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media_port = media.local_addr().unwrap().port();
    let via = |b: &str| format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{b}");
    sock.send_to(
        invite(LONG_NUMBER, &via("fork-a"), "merged@conf", media_port).as_bytes(),
        daemon.addr,
    )
    .unwrap();
    sock.send_to(
        invite(LONG_NUMBER, &via("fork-b"), "merged@conf", media_port).as_bytes(),
        daemon.addr,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut merged, mut routed) = (false, false);
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline && !(merged && routed) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("SIP/2.0 482") {
            assert!(
                text.contains("fork-b"),
                "the second branch is refused: {text}"
            );
            merged = true;
        }
        if text.starts_with("SIP/2.0 302") {
            assert!(text.contains("fork-a"), "{text}");
            routed = true;
        }
    }
    assert!(merged && routed, "482 for fork-b, 302 for fork-a");
    let events = daemon.wait_events(3);
    std::thread::sleep(Duration::from_millis(300));
    let events_now = daemon.events();
    assert_eq!(events_now.len(), events.len(), "no second call's events");
    assert_eq!(events_of_type(&events_now, "call.offered").len(), 1);
}

#[test]
fn a_call_the_outbox_cannot_take_gets_503_before_any_announcement() {
    let _serial = serial();
    let daemon = Daemon::start("[outbox]\nsegment_bytes = 4096\nmax_bytes = 8192\n");
    // Fill the outbox with announced calls until one is refused.
    let mut refused = None;
    for _ in 0..10 {
        let seen = call(&daemon);
        if seen.last() == Some(&503) {
            refused = Some(seen);
            break;
        }
    }
    let seen = refused.expect("the small outbox fills within ten calls");
    assert!(!seen.contains(&183), "refused before the notice: {seen:?}");
}

/// The base config with a single RTP port.
fn one_port(dir: &std::path::Path) -> String {
    let config = base_config(&dir.join("var"));
    let min: u16 = config
        .lines()
        .find_map(|l| l.strip_prefix("port_min = "))
        .unwrap()
        .parse()
        .unwrap();
    let max_line = config
        .lines()
        .find(|l| l.starts_with("port_max = "))
        .unwrap()
        .to_owned();
    // One even port: the range's lower end and the odd port after it.
    config.replace(&max_line, &format!("port_max = {}", min + 1))
}

/// INVITE → final; the statuses seen.
fn call(daemon: &Daemon) -> Vec<u16> {
    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    uac.invite("0 101");
    let seen = uac.invite_statuses();
    uac.ack();
    seen
}

#[test]
fn an_rtp_port_is_held_after_playback_until_its_socket_closes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = one_port(dir.path());
    let daemon = Daemon::start_with(dir, &config);
    let first = call(&daemon);
    assert_eq!(first.last(), Some(&302), "{first:?}");
    // Right after the 302 the only port still belongs to the first call's stream.
    let second = call(&daemon);
    assert_eq!(second.last(), Some(&503), "{second:?}");
    std::thread::sleep(Duration::from_millis(2500));
    let third = call(&daemon);
    assert!(
        third.contains(&183) && third.last() == Some(&302),
        "{third:?}"
    );
}

#[test]
fn sighup_reloads_acl_media_address_and_log_level_without_touching_a_call_in_flight() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(&dir.path().join("var")).replace(
        "allow = [\"127.0.0.0/8\", \"::1/128\"]",
        "allow = [\"127.0.0.1/32\"]",
    );
    let config_path = dir.path().join("calltrackd.toml");
    let daemon = Daemon::start_with(dir, &config);
    let options = |from: &str| {
        let sock = UdpSocket::bind((from, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let msg = format!(
            "OPTIONS sip:{POOL_NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {}\r\nFrom: <sip:probe@{from}>;tag=p\r\nTo: <sip:{POOL_NUMBER}@127.0.0.1>\r\nCall-ID: acl-{from}@conf\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            sock.local_addr().unwrap()
        );
        sock.send_to(msg.as_bytes(), daemon.addr).unwrap();
        let mut buf = [0u8; 4096];
        sock.recv_from(&mut buf)
            .ok()
            .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string())
    };
    assert!(options("127.0.0.2").is_none(), "not in the ACL yet");
    // At debug level a redirected call logs a debug line.
    let before = Uac::new(daemon.addr, POOL_NUMBER);
    before.invite("0 101");
    before.expect(302, "INVITE");
    before.ack();
    let redirected_before = daemon.log().matches("Call redirected.").count();
    assert_eq!(redirected_before, 1);

    // A call in its 2 s announcement while the config changes.
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    let rtp = uac.receive(Duration::from_millis(400));
    uac.invite("0 101");
    let early = uac.expect(183, "INVITE");
    assert!(early.contains("c=IN IP4 127.0.0.1"), "{early}");
    let reloaded = config
        .replace(
            "allow = [\"127.0.0.1/32\"]",
            "allow = [\"127.0.0.1/32\", \"127.0.0.2/32\"]",
        )
        .replace("[media]\n", "[media]\naddress = \"127.0.0.3\"\n")
        .replace("level = \"debug\"", "level = \"info\"");
    std::fs::write(&config_path, reloaded).unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("Config reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    uac.expect(302, "INVITE");
    uac.ack();
    let packets = rtp.finish();
    assert!(
        packets.len() >= 90,
        "the call in flight played on: {} packets",
        packets.len()
    );
    assert!(
        packets
            .iter()
            .all(|p| p.from.ip().to_string() == "127.0.0.1"),
        "and kept its media address"
    );

    // New packets meet the new ACL; new calls get the new media address; debug lines stop.
    let answer = options("127.0.0.2").expect("127.0.0.2 is allowed now");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    let next = Uac::new(daemon.addr, POOL_NUMBER);
    next.invite("0 101");
    let early = next.expect(183, "INVITE");
    assert!(early.contains("c=IN IP4 127.0.0.3"), "{early}");
    next.expect(302, "INVITE");
    next.ack();
    daemon.wait_events(9);
    let redirected_after = daemon.log().matches("Call redirected.").count();
    assert_eq!(
        redirected_after, redirected_before,
        "at info level neither the call in flight nor the new call logs its debug line"
    );
}
