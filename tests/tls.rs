//! SIP over TLS against the built daemon: sipp as the carrier (Debian's sipp has no TLS, so its
//! TCP side is wrapped into TLS by socat, verifying our certificate), and a rustls client for
//! what must be seen on the TLS connection itself: SNI, versions, client certificates, `sips:`
//! Contacts, and certificate reload on SIGHUP without dropping open connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::{Pki, TlsClient, Versions, client_config, first_cert};
use common::*;

fn daemon_with(pki: &Pki, tls_extra: &str, extra: &str) -> Daemon {
    let metrics = "[ops]\nmetrics_listen = \"127.0.0.1:0\"\n";
    Daemon::start(&format!("{}\n{metrics}\n{extra}", pki.config(tls_extra)))
}

fn options(port: u16, uri: &str, branch: &str) -> String {
    format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK{branch}\r\nFrom: <sips:ping@carrier.test>;tag=o1\r\nTo: <{uri}>\r\nCall-ID: {branch}@carrier.test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// An INVITE for `number` over TLS with a `sips:` Request-URI and an SDP offer.
fn sips_invite(port: u16, number: &str, media_port: u16) -> String {
    let sdp = format!(
        "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {media_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    format!(
        "INVITE sips:{number}@sip.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKtls1\r\nFrom: <sips:+4917612345678@carrier.test>;tag=t1\r\nTo: <sips:{number}@sip.test>\r\nCall-ID: tls-call-1@carrier.test\r\nCSeq: 1 INVITE\r\nContact: <sips:carrier@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

#[test]
fn a_sips_invite_over_tls_gets_sips_contacts_and_its_events() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(&dir.path().join("pki"));
    let daemon = daemon_with(&pki, "", "");
    let config = client_config(&pki, Versions::Any, false);
    let mut client = TlsClient::connect(daemon.tls_addr(), "sip.test", config).expect("handshake");
    assert_eq!(client.server_cert(), first_cert(&pki.server_cert));
    let media = std::net::UdpSocket::bind("127.0.0.1:0").expect("media");
    let port = client.local_port();
    client.send(&sips_invite(
        port,
        POOL_NUMBER,
        media.local_addr().expect("addr").port(),
    ));
    let progress = client.expect(183);
    assert!(
        progress.contains(&format!(
            "Contact: <sips:127.0.0.1:{}>",
            daemon.tls_addr().port()
        )),
        "183 names our TLS listener as a sips: Contact:\n{progress}"
    );
    assert!(
        progress.contains("Via: SIP/2.0/TLS 127.0.0.1"),
        "{progress}"
    );
    let redirect = client.expect(302);
    assert!(
        redirect.contains("Contact: <sips:+493055509000@pbx.example.net;user=phone>"),
        "a SIPS request is redirected to a SIPS target (RFC 5630):\n{redirect}"
    );
    let events = daemon.wait_events(3);
    let kinds: Vec<_> = events.iter().map(|e| e["event_type"].clone()).collect();
    assert_eq!(kinds, ["call.offered", "call.disclosed", "call.routed"]);
    let metrics = daemon.http_get("/metrics");
    assert!(
        metrics.contains("calltrackd_sip_connections{transport=\"tls\"} 1"),
        "{metrics}"
    );
}

#[test]
fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(&dir.path().join("pki"));
    let daemon = daemon_with(&pki, "", "");
    let config = client_config(&pki, Versions::Any, false);
    let sni = TlsClient::connect(daemon.tls_addr(), "sip2.test", config.clone()).expect("sni");
    assert_eq!(sni.server_cert(), first_cert(&pki.sni_cert));
    let default = TlsClient::connect(daemon.tls_addr(), "sip.test", config).expect("default");
    assert_eq!(default.server_cert(), first_cert(&pki.server_cert));
}

#[test]
fn tls_1_2_is_the_floor_by_default_and_1_3_can_be_required() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(&dir.path().join("pki"));
    let only12 = client_config(&pki, Versions::Only12, false);
    let daemon = daemon_with(&pki, "", "");
    let mut client = TlsClient::connect(daemon.tls_addr(), "sip.test", only12.clone())
        .expect("TLS 1.2 accepted by default");
    let port = client.local_port();
    client.send(&options(port, "sips:sip.test", "v12"));
    client.expect(200);
    drop(daemon);

    let strict = daemon_with(&pki, "min_version = \"1.3\"", "");
    assert!(
        TlsClient::connect(strict.tls_addr(), "sip.test", only12).is_err(),
        "a TLS 1.2-only client is refused with min_version 1.3"
    );
    let metrics = wait_metric(&strict, "calltrackd_sip_tls_handshake_failures_total 1");
    assert!(metrics, "the failed handshake is counted");
}

fn wait_metric(daemon: &Daemon, line: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if daemon.http_get("/metrics").contains(line) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_client_ca_makes_trunks_present_a_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(&dir.path().join("pki"));
    let ca = format!("client_ca_file = \"{}\"", pki.ca.display());
    let daemon = daemon_with(&pki, &ca, "");
    let anonymous = client_config(&pki, Versions::Any, false);
    // With TLS 1.3 the client learns of the refusal on its first read, not in the handshake.
    let refused = TlsClient::connect(daemon.tls_addr(), "sip.test", anonymous).and_then(|mut c| {
        let port = c.local_port();
        c.send(&options(port, "sips:sip.test", "anon"));
        c.next_message()
            .ok_or_else(|| std::io::Error::other("closed"))
    });
    assert!(refused.is_err(), "no client certificate, no service");
    assert!(wait_metric(
        &daemon,
        "calltrackd_sip_tls_handshake_failures_total 1"
    ));
    let with_cert = client_config(&pki, Versions::Any, true);
    let mut client =
        TlsClient::connect(daemon.tls_addr(), "sip.test", with_cert).expect("mutual TLS");
    let port = client.local_port();
    client.send(&options(port, "sips:sip.test", "mtls"));
    client.expect(200);
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_open_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(&dir.path().join("pki"));
    let daemon = daemon_with(&pki, "", "");
    let config = client_config(&pki, Versions::Any, false);
    let mut open = TlsClient::connect(daemon.tls_addr(), "sip.test", config.clone()).expect("a");
    let old = open.server_cert();
    pki.issue(
        &["sip.test", "127.0.0.1"],
        &pki.server_cert,
        &pki.server_key,
    );
    let fresh = first_cert(&pki.server_cert);
    assert_ne!(old, fresh);
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("Config reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let new = TlsClient::connect(daemon.tls_addr(), "sip.test", config).expect("b");
    assert_eq!(
        new.server_cert(),
        fresh,
        "new handshakes use the reloaded certificate"
    );
    let port = open.local_port();
    open.send(&options(port, "sips:sip.test", "kept"));
    open.expect(200);
}

#[test]
fn a_sips_request_over_udp_is_refused_416() {
    let daemon = Daemon::start("");
    let msg = "OPTIONS sips:sip.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKsipsudp;rport\r\nFrom: <sips:a@carrier.test>;tag=1\r\nTo: <sips:sip.test>\r\nCall-ID: sips-udp@x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (status, _) =
        udp_exchange(daemon.addr, msg.as_bytes(), Duration::from_secs(5)).expect("an answer");
    assert_eq!(status, 416);
}

#[test]
fn a_certificate_that_cannot_be_read_is_named_by_check_config() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(&dir.path().join("pki"));
    std::fs::write(&pki.server_key, "not a key\n").expect("spoil key");
    let config = format!(
        "{}\n{}",
        base_config(&dir.path().join("var")),
        pki.config("")
    );
    let path = dir.path().join("calltrackd.toml");
    std::fs::write(&path, &config).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = config
        .lines()
        .position(|l| l.starts_with("private_key_file"))
        .expect("key line")
        + 1;
    assert!(
        err.contains(&format!("line {line}: sip.tls.private_key_file:")),
        "{err}"
    );
    assert!(err.contains("no usable PEM private key"), "{err}");
}

/// socat: plain TCP on a loopback port, TLS (verifying our certificate) to the daemon.
struct Bridge {
    child: Child,
    port: u16,
}

impl Bridge {
    fn start(tls: SocketAddr, pki: &Pki) -> Bridge {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!(
                "OPENSSL:{tls},cafile={},commonname=sip.test,snihost=sip.test,verify=1",
                pki.ca.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat must be installed (Debian package socat)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "socat did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Bridge { child, port }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sipp_calls_through_a_tls_bridge_are_redirected_and_recorded() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new(&dir.path().join("pki"));
    let daemon = daemon_with(&pki, "", "");
    let bridge = Bridge::start(daemon.tls_addr(), &pki);
    let target: SocketAddr = ([127, 0, 0, 1], bridge.port).into();
    let out = sipp("uac_redirect.xml", "t1", target, POOL_NUMBER, &["-m", "3"]);
    assert_sipp_ok(&out, "sipp over TLS");
    let events = daemon.wait_events(9);
    assert_eq!(events_of_type(&events, "call.routed").len(), 3);
    assert!(
        events_of_type(&events, "call.disclosed")
            .iter()
            .all(|e| e["disclosure"] == "played")
    );
    let metrics = daemon.http_get("/metrics");
    assert!(
        !metrics.contains("calltrackd_sip_tls_handshake_failures_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("calltrackd_sip_requests_total{method=\"INVITE\"} 3"));
}
