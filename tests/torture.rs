//! RFC 4475 and RFC 5118 torture messages over real UDP: each gets the answer its manifest row
//! names (or none, for responses and unanswerable messages), and the daemon keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn torture_dir() -> PathBuf {
    std::env::var_os("SIP_TORTURE_DIR")
        .map_or_else(|| repo().join("../shared/sip-torture"), PathBuf::from)
}

/// What the daemon answers to each file, as a UAS that redirects tracking numbers (none of these
/// address one): `Some(status)`, or `None` when it must stay silent.
fn expected() -> BTreeMap<&'static str, Option<u16>> {
    BTreeMap::from([
        // RFC 4475 §3.1.1: valid.
        ("wsinv.dat", Some(404)),   // INVITE to a non-number user
        ("intmeth.dat", Some(501)), // unknown method
        ("esc01.dat", Some(404)),
        ("escnull.dat", Some(405)), // REGISTER: we are no registrar
        ("esc02.dat", Some(501)),   // RE%47IST%45R is an unknown method
        ("lwsdisp.dat", Some(200)), // OPTIONS
        ("longreq.dat", Some(404)),
        ("dblreq.dat", Some(405)), // the REGISTER; the trailing INVITE is ignored (§18.3)
        ("semiuri.dat", Some(200)),
        ("transports.dat", Some(200)),
        ("mpart01.dat", Some(405)), // MESSAGE
        ("unreason.dat", None),     // responses: we run no client transactions
        ("noreason.dat", None),
        // RFC 4475 §3.1.2: invalid.
        ("badinv01.dat", Some(400)),
        ("clerr.dat", Some(400)),
        ("ncl.dat", Some(400)),
        ("scalar02.dat", Some(400)),
        ("scalarlg.dat", None),
        ("quotbal.dat", Some(400)),
        ("ltgtruri.dat", Some(400)),
        ("lwsruri.dat", Some(400)),
        ("lwsstart.dat", Some(400)),
        ("trws.dat", Some(400)),
        ("escruri.dat", Some(400)),
        ("baddate.dat", Some(404)), // Date is never read: the lenient choice the RFC prefers
        ("regbadct.dat", Some(400)),
        ("badaspec.dat", Some(400)),
        ("baddn.dat", Some(400)),
        ("badvers.dat", Some(505)),
        ("mismatch01.dat", Some(400)),
        ("mismatch02.dat", Some(501)),
        ("bigcode.dat", None),
        // RFC 4475 §3.2/§3.3/§3.4: semantic.
        ("badbranch.dat", Some(200)), // falls back to RFC 2543 matching
        ("insuf.dat", None),          // no Call-ID/From/To: no well-formed response exists
        ("unkscm.dat", Some(416)),
        ("novelsc.dat", Some(416)),
        ("unksm2.dat", Some(405)),
        ("bext01.dat", Some(420)),
        ("invut.dat", Some(415)),
        ("regaut01.dat", Some(405)),
        ("multi01.dat", Some(400)),
        ("mcl01.dat", Some(400)),
        ("bcast.dat", None),
        ("zeromf.dat", Some(200)), // OPTIONS with Max-Forwards 0: an endpoint answers it
        ("cparam01.dat", Some(405)),
        ("cparam02.dat", Some(405)),
        ("regescrt.dat", Some(405)),
        ("sdp01.dat", Some(406)), // Accept excludes application/sdp
        ("inv2543.dat", Some(404)),
        // RFC 5118.
        ("ipv6-good.dat", Some(405)),
        ("ipv6-bad.dat", Some(400)),
        ("port-ambiguous.dat", Some(405)),
        ("port-unambiguous.dat", Some(405)),
        ("via-received-param-with-delim.dat", Some(481)), // BYE outside a dialog
        ("via-received-param-no-delim.dat", Some(200)),
        ("ipv6-in-sdp.dat", Some(400)), // archive quirk: Content-Length exceeds the body
        ("mult-ip-in-header.dat", Some(481)),
        ("mult-ip-in-sdp.dat", Some(404)),
        ("ipv4-mapped-ipv6.dat", Some(404)),
        ("ipv6-bug-abnf-3-colons.dat", Some(200)),
        ("ipv6-correct-abnf-2-colons.dat", Some(200)),
    ])
}

/// The port of the top Via's sent-by, where a UAS sends UDP responses without rport (§18.2.2).
fn sent_by_port(message: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(message);
    let line = text
        .lines()
        .find(|l| {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            name == "via" || name == "v"
        })
        .unwrap_or("");
    let value = line.split_once(':').map_or("", |(_, v)| v);
    let sent_by = value
        .split(';')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .last()
        .unwrap_or("");
    let port = if let Some(end) = sent_by.rfind(']') {
        sent_by[end + 1..]
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
    } else {
        sent_by.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
    };
    if value.contains("rport") {
        0
    } else {
        port.unwrap_or(5060)
    }
}

fn answer(daemon: SocketAddr, message: &[u8], source: u8, wait: Duration) -> Option<u16> {
    // Bind where the daemon will answer: a loopback address of this message's own (so Timer G
    // retransmissions for an earlier message cannot be mistaken for an answer), the Via's port.
    let port = sent_by_port(message);
    let socket = UdpSocket::bind(("127.0.61.".to_owned() + &source.to_string(), port))
        .expect("bind a 127.0.61.x address for torture replies");
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(message, daemon).unwrap();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
        assert!(text.starts_with("SIP/2.0 "), "well-formed status line");
        assert!(
            text.contains("\r\nContent-Length: "),
            "Content-Length always present"
        );
        if status >= 200 {
            return Some(status);
        }
    }
    None
}

#[test]
fn every_torture_message_gets_its_manifest_behaviour_over_udp() {
    let dir = torture_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).expect("manifest.tsv");
    let expected = expected();
    let mut rows = 0;
    let mut wrong = Vec::new();
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let file = line.split('\t').next().unwrap();
        rows += 1;
        let want = *expected
            .get(file)
            .unwrap_or_else(|| panic!("{file} missing from the table"));
        let message = std::fs::read(dir.join(file)).unwrap();
        // A daemon per message: many of these files share a branch and sent-by, so one daemon
        // would (rightly, RFC 3261 §17.2.3) treat the later ones as retransmissions.
        let daemon = Daemon::start("");
        let wait = if want.is_some() {
            Duration::from_secs(3)
        } else {
            Duration::from_millis(400)
        };
        let got = answer(daemon.addr, &message, rows as u8, wait);
        if got != want {
            wrong.push(format!("{file}: expected {want:?}, got {got:?}"));
        }
    }
    assert_eq!(rows, 61, "all manifest rows exercised");
    assert_eq!(rows, expected.len());
    assert!(
        wrong.is_empty(),
        "{} of {rows} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // One daemon takes them all in a row without falling over, then serves a normal call.
    let daemon = Daemon::start("");
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let file = line.split('\t').next().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .send_to(&std::fs::read(dir.join(file)).unwrap(), daemon.addr)
            .unwrap();
    }

    // The RFC 5118 messages as they would travel (Content-Length fixed).
    let wire = std::fs::read(dir.join("rfc5118-wire/ipv6-in-sdp.dat")).unwrap();
    let wire = answer(daemon.addr, &wire, 200, Duration::from_secs(3));
    assert_eq!(
        wire,
        Some(404),
        "ipv6-in-sdp framed correctly is an ordinary INVITE"
    );

    // And the daemon still serves a normal call.
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "a normal call after the torture run");
    assert!(!daemon.log().contains("panicked"), "no task panicked");
}
