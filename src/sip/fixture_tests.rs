//! The carrier-style fixtures in `fixtures/sip/` parse into the values the UAS relies on.

use std::path::PathBuf;

use super::{Message, Method, Request, Uri, frame_datagram, parse};

fn load(name: &str) -> Request {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sip")
        .join(name);
    let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let frame = frame_datagram(&raw, 65_535).unwrap();
    assert_eq!(
        frame.len(),
        raw.len(),
        "{name}: Content-Length must match the file"
    );
    match parse(frame).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{name} is not a request"),
    }
}

#[test]
fn every_fixture_parses_with_its_body() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sip");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".sip") {
            let r = load(&name);
            assert_eq!(r.method == Method::Invite, !r.body.is_empty(), "{name}");
            n += 1;
        }
    }
    assert_eq!(n, 7);
}

#[test]
fn e164_invite_has_user_phone_and_pai() {
    let r = load("invite-e164-user-phone.sip");
    let u = r.uri.as_sip().unwrap();
    assert!(u.is_phone());
    assert_eq!(u.user.as_deref(), Some("+4930555010203"));
    assert_eq!(r.content_type(), Some("application/sdp"));
    assert_eq!(r.vias()[0].params.rport, Some(None));
}

#[test]
fn national_and_tel_forms_parse() {
    let r = load("invite-national-format.sip");
    assert_eq!(
        r.uri.as_sip().unwrap().user.as_deref(),
        Some("030555010204")
    );
    assert_eq!(r.from().display.as_deref(), Some("Mustermann Erika"));
    let r = load("invite-tel-uri-pai.sip");
    let Uri::Tel(t) = &r.uri else { panic!() };
    assert!(t.is_global());
    let pai = r.headers.get_all("P-Asserted-Identity");
    assert_eq!(pai.len(), 2);
    let first = super::NameAddr::parse(pai[0]).unwrap();
    assert_eq!(first.display.as_deref(), Some("Anna Beispiel"));
}

#[test]
fn anonymous_and_compact_forms_parse() {
    let r = load("invite-anonymous-privacy.sip");
    assert_eq!(r.headers.get("Privacy"), Some("id"));
    assert_eq!(r.from().display.as_deref(), Some("Anonymous"));
    let r = load("invite-compact-headers.sip");
    assert_eq!(r.vias().len(), 2);
    assert_eq!(r.call_id(), "55a2c9e1b7d04f63@198.51.100.50");
    assert_eq!(r.contacts().len(), 1);
}

#[test]
fn cancel_matches_its_invite() {
    let inv = load("invite-e164-user-phone.sip");
    let can = load("cancel.sip");
    assert_eq!(can.method, Method::Cancel);
    assert_eq!(can.cseq().seq, inv.cseq().seq);
    assert_eq!(can.vias()[0].params.branch, inv.vias()[0].params.branch);
    assert_eq!(load("options-ping.sip").max_forwards(), Some(70));
}
