//! RFC 4475 / RFC 5118 torture messages against an explicit expectation per manifest row.
//! Directory: `SIP_TORTURE_DIR`, default `../shared/sip-torture` next to the crate.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;

use super::{FramingError, Host, Message, Method, Request, Uri, frame_datagram, parse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A request or response came out.
    Parses,
    /// A request was rejected and an error response with this status can be formed.
    Rejects(u16),
    /// Nothing to answer: a bad response, or a request missing the headers a reply needs.
    Drop,
}
use Outcome::{Drop, Parses, Rejects};

/// Parse-level outcome per file. Comments mark deliberate choices.
const TABLE: &[(&str, Outcome)] = &[
    ("wsinv.dat", Parses),
    ("intmeth.dat", Parses),
    ("esc01.dat", Parses),
    ("escnull.dat", Parses),
    ("esc02.dat", Parses),
    ("lwsdisp.dat", Parses),
    ("longreq.dat", Parses),
    ("dblreq.dat", Parses),
    ("semiuri.dat", Parses),
    ("transports.dat", Parses),
    ("mpart01.dat", Parses),
    ("unreason.dat", Parses),
    ("noreason.dat", Parses),
    ("badinv01.dat", Rejects(400)),
    ("clerr.dat", Rejects(400)),
    ("ncl.dat", Rejects(400)),
    ("scalar02.dat", Rejects(400)),
    ("scalarlg.dat", Drop),
    ("quotbal.dat", Rejects(400)),
    ("ltgtruri.dat", Rejects(400)),
    ("lwsruri.dat", Rejects(400)),
    ("lwsstart.dat", Rejects(400)),
    ("trws.dat", Rejects(400)),
    ("escruri.dat", Rejects(400)),
    // Lenient on purpose: Date is never interpreted, so its bad zone is irrelevant (the
    // manifest's "better" option).
    ("baddate.dat", Parses),
    ("regbadct.dat", Rejects(400)),
    ("badaspec.dat", Rejects(400)),
    ("baddn.dat", Rejects(400)),
    ("badvers.dat", Rejects(505)),
    ("mismatch01.dat", Rejects(400)),
    ("mismatch02.dat", Rejects(501)),
    ("bigcode.dat", Drop),
    ("badbranch.dat", Parses),
    // No Call-ID/From/To: a 400 could not carry the headers §8.2.6.2 requires, so drop.
    ("insuf.dat", Drop),
    ("unkscm.dat", Parses),
    ("novelsc.dat", Parses),
    ("unksm2.dat", Parses),
    ("bext01.dat", Parses),
    ("invut.dat", Parses),
    ("regaut01.dat", Parses),
    ("multi01.dat", Rejects(400)),
    ("mcl01.dat", Rejects(400)),
    ("bcast.dat", Parses),
    ("zeromf.dat", Parses),
    ("cparam01.dat", Parses),
    ("cparam02.dat", Parses),
    ("regescrt.dat", Parses),
    ("sdp01.dat", Parses),
    ("inv2543.dat", Parses),
    ("ipv6-good.dat", Parses),
    ("ipv6-bad.dat", Rejects(400)),
    ("port-ambiguous.dat", Parses),
    ("port-unambiguous.dat", Parses),
    ("via-received-param-with-delim.dat", Parses),
    ("via-received-param-no-delim.dat", Parses),
    // Archive quirk: Content-Length 268 exceeds the body, which on UDP is a 400 (§18.3);
    // the wire variant parses.
    ("ipv6-in-sdp.dat", Rejects(400)),
    ("mult-ip-in-header.dat", Parses),
    ("mult-ip-in-sdp.dat", Parses),
    ("ipv4-mapped-ipv6.dat", Parses),
    ("ipv6-bug-abnf-3-colons.dat", Parses),
    ("ipv6-correct-abnf-2-colons.dat", Parses),
];

fn dir() -> PathBuf {
    std::env::var_os("SIP_TORTURE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/sip-torture"),
        PathBuf::from,
    )
}

fn read(name: &str) -> Vec<u8> {
    let p = dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn outcome(raw: &[u8]) -> (Outcome, Option<Message>) {
    let frame = match frame_datagram(raw, 65_535) {
        Ok(f) => f,
        Err(FramingError::Keepalive | FramingError::Io(_)) => return (Drop, None),
        Err(e) => e.frame().cloned().unwrap_or_default(),
    };
    match parse(frame) {
        Ok(m) => (Parses, Some(m)),
        Err(e) if e.reply.is_some() => (Rejects(e.status), None),
        Err(_) => (Drop, None),
    }
}

fn request(name: &str) -> Request {
    match outcome(&read(name)).1 {
        Some(Message::Request(r)) => r,
        _ => panic!("{name} is not a parsed request"),
    }
}

fn manifest() -> Vec<Vec<String>> {
    let text = String::from_utf8(read("manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn table_covers_every_manifest_row() {
    let rows = manifest();
    assert_eq!(rows.len(), 61);
    let table: BTreeMap<_, _> = TABLE.iter().copied().collect();
    assert_eq!(table.len(), TABLE.len(), "duplicate table entries");
    for row in &rows {
        assert!(
            table.contains_key(row[0].as_str()),
            "{} not in table",
            row[0]
        );
    }
    assert_eq!(TABLE.len(), rows.len());
}

#[test]
fn every_torture_file_has_its_expected_outcome() {
    let mut wrong = Vec::new();
    for (name, want) in TABLE {
        let (got, _) = outcome(&read(name));
        if got != *want {
            wrong.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn valid_and_semantic_rows_parse_and_invalid_rows_do_not() {
    // Cross-check the table against the manifest's class column, listing the deliberate
    // exceptions explicitly.
    let lenient = ["baddate.dat"];
    let quirk = ["ipv6-in-sdp.dat", "insuf.dat"];
    for row in manifest() {
        let (name, class) = (row[0].as_str(), row[4].as_str());
        let (got, _) = outcome(&read(name));
        if lenient.contains(&name) || quirk.contains(&name) {
            continue;
        }
        if class == "invalid" || class.contains("treat as invalid") {
            assert_ne!(got, Parses, "{name} ({class})");
        } else {
            assert_eq!(got, Parses, "{name} ({class})");
        }
    }
}

#[test]
fn rfc5118_wire_variants_all_behave_as_the_rfc_says() {
    let rows: Vec<_> = manifest()
        .into_iter()
        .filter(|r| r[1] == "RFC5118")
        .collect();
    assert_eq!(rows.len(), 12);
    for row in rows {
        let name = row[0].as_str();
        let (got, _) = outcome(&read(&format!("rfc5118-wire/{name}")));
        let want = if name == "ipv6-bad.dat" {
            Rejects(400)
        } else {
            Parses
        };
        assert_eq!(got, want, "wire {name}");
    }
}

#[test]
fn torture_details_are_parsed_as_the_rfcs_describe() {
    let r = request("semiuri.dat");
    let u = r.uri.as_sip().unwrap();
    assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(u.host, Host::Domain("example.com".into()));

    let r = request("port-ambiguous.dat");
    let u = r.uri.as_sip().unwrap();
    assert_eq!(u.host, Host::Ipv6("2001:db8::10:5070".parse().unwrap()));
    assert_eq!(u.port, None);
    let r = request("port-unambiguous.dat");
    assert_eq!(r.uri.as_sip().unwrap().port, Some(5070));

    let r = request("dblreq.dat");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());

    let r = request("esc02.dat");
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_eq!(r.contacts().len(), 2, "C%6Fntact is not Contact");

    let r = request("escnull.dat");
    let users: Vec<_> = r
        .contacts()
        .iter()
        .map(|c| c.uri.as_sip().unwrap().user_unescaped().unwrap())
        .collect();
    assert_eq!(users, [b"\0".to_vec(), b"\0\0".to_vec()]);

    let r = request("cparam01.dat");
    assert!(r.contacts()[0].params.contains("unknownparam"));
    let r = request("cparam02.dat");
    assert!(
        r.contacts()[0]
            .uri
            .as_sip()
            .unwrap()
            .params
            .contains("unknownparam")
    );

    let r = request("mpart01.dat");
    assert_eq!(r.body.len(), 553);

    let r = request("wsinv.dat");
    assert_eq!(r.max_forwards(), Some(68));
    assert_eq!(r.cseq().seq, 9);
    assert_eq!(r.vias().len(), 3);
    assert_eq!(r.to().tag(), Some("1918181833n"));
    assert_eq!(r.from().display.as_deref(), Some("J Rosenberg \\\""));

    let r = request("unkscm.dat");
    assert!(matches!(r.uri, Uri::Other { .. }));
    let r = request("zeromf.dat");
    assert_eq!(r.max_forwards(), Some(0));

    let r = request("via-received-param-with-delim.dat");
    assert_eq!(
        r.vias()[0].params.received,
        Some("2001:db8::9:255".parse().unwrap())
    );
}

#[test]
fn error_replies_echo_the_request_headers() {
    let raw = read("badvers.dat");
    let e = parse(Bytes::from(raw)).unwrap_err();
    let reply = e.reply.unwrap();
    assert_eq!(reply.call_id, "badvers.31417@c.example.com");
    assert_eq!(reply.vias.len(), 1);
    assert_eq!(reply.cseq, "1 OPTIONS");
}

#[test]
fn every_prefix_of_every_torture_file_is_handled_without_panic() {
    use tokio_util::codec::Decoder;
    let mut parsed = 0;
    for (name, _) in TABLE {
        let raw = read(name);
        for end in 0..=raw.len() {
            if let Ok(f) = frame_datagram(&raw[..end], 65_535)
                && parse(f).is_ok()
            {
                parsed += 1;
            }
        }
        let mut dec = super::StreamDecoder::new(4096);
        let mut buf = bytes::BytesMut::new();
        for b in &raw {
            buf.extend_from_slice(&[*b]);
            if dec.decode(&mut buf).is_err() {
                break;
            }
        }
    }
    assert!(parsed > 0);
}
