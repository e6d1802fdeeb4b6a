use bytes::Bytes;

use super::*;
use crate::sip::{Message, parse};

fn routing() -> Routing {
    let normalizer = Normalizer::new("DE").unwrap();
    let route = Route {
        campaign_id: "spring".into(),
        destination: "sip:+493055509000@pbx.example.net".into(),
        tracking_number: normalizer.normalize("+493055501000").unwrap(),
        plan: std::sync::Arc::new(crate::call::disclosure::Plan::none()),
    };
    Routing::new(normalizer, [route])
}

fn request(start: &str, extra: &str, body: &str) -> Request {
    request_mf(start, extra, body, 70)
}

fn request_mf(start: &str, extra: &str, body: &str, max_forwards: u8) -> Request {
    let text = format!(
        "{start}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKt\r\nFrom: <sip:+4917612345678@192.0.2.1>;tag=a\r\nTo: <sip:+493055501000@192.0.2.9>\r\nCall-ID: c1\r\nCSeq: 1 {}\r\nMax-Forwards: {max_forwards}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        start.split(' ').next().unwrap(),
        body.len()
    );
    match parse(Bytes::from(text)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Reply { status, .. } => *status,
        Decision::Redirect(_) => 302,
    }
}

#[test]
fn pool_number_in_every_carrier_form_is_redirected() {
    for ruri in [
        "sip:+493055501000@192.0.2.9;user=phone",
        "sip:03055501000@192.0.2.9",
        "sip:004930-5550-1000@192.0.2.9",
        "tel:+49-30-5550-1000",
        "sip:+493055501000;npdi;rn=+4930999@192.0.2.9;user=phone",
        "sip:%2B493055501000@192.0.2.9",
    ] {
        let d = decide(
            &request(&format!("INVITE {ruri} SIP/2.0"), "", ""),
            &routing(),
        );
        let Decision::Redirect(route) = d else {
            panic!("{ruri}: {d:?}")
        };
        assert_eq!(route.campaign_id, "spring");
    }
}

#[test]
fn trunk_group_in_request_uri_falls_back_to_to() {
    let d = decide(
        &request("INVITE sip:trunk7@192.0.2.9 SIP/2.0", "", ""),
        &routing(),
    );
    assert_eq!(status(&d), 302);
}

#[test]
fn unknown_number_is_404() {
    let text = "INVITE sip:+493055509999@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKt\r\nFrom: <sip:a@b>;tag=a\r\nTo: <sip:+493055509999@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let Message::Request(req) = parse(Bytes::from(text)).unwrap() else {
        panic!()
    };
    assert_eq!(status(&decide(&req, &routing())), 404);
}

#[test]
fn methods_outside_our_set_get_405_or_501_with_allow() {
    let d = decide(
        &request("REGISTER sip:192.0.2.9 SIP/2.0", "", ""),
        &routing(),
    );
    assert_eq!(status(&d), 405);
    let Decision::Reply { headers, .. } = d else {
        panic!()
    };
    assert_eq!(headers, vec![("Allow", ALLOW.to_owned())]);
    assert_eq!(
        status(&decide(
            &request("FOO sip:192.0.2.9 SIP/2.0", "", ""),
            &routing()
        )),
        501
    );
}

#[test]
fn require_gets_420_listing_only_the_extensions_we_lack() {
    let d = decide(
        &request(
            "INVITE sip:+493055501000@x SIP/2.0",
            "Require: 100rel, foo\r\nRequire: bar\r\n",
            "",
        ),
        &routing(),
    );
    assert_eq!(
        d,
        Decision::Reply {
            status: 420,
            headers: vec![("Unsupported", "foo, bar".into())]
        }
    );
    // RFC 3262 and the IMS media-security agreement are supported.
    let d = decide(
        &request(
            "INVITE sip:+493055501000@x SIP/2.0",
            "Require: 100rel\r\nRequire: MediaSec\r\n",
            "",
        ),
        &routing(),
    );
    assert_eq!(status(&d), 302);
}

#[test]
fn a_prack_without_a_call_is_481() {
    assert_eq!(
        status(&decide(
            &request("PRACK sip:x@192.0.2.9 SIP/2.0", "RAck: 1 1 INVITE\r\n", ""),
            &routing()
        )),
        481
    );
}

#[test]
fn a_sip_i_multipart_offer_is_taken_and_a_broken_one_is_400() {
    let body = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b\r\nContent-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;handling=required\r\n\r\n\x01\x02\r\n--b--\r\n";
    let r = request(
        "INVITE sip:+493055501000@x SIP/2.0",
        "Content-Type: multipart/mixed;boundary=b\r\n",
        body,
    );
    assert_eq!(status(&decide(&r, &routing())), 302);
    let r = request(
        "INVITE sip:+493055501000@x SIP/2.0",
        "Content-Type: multipart/mixed\r\n",
        body,
    );
    assert_eq!(status(&decide(&r, &routing())), 400);
}

#[test]
fn options_is_200_even_with_max_forwards_zero_but_invite_is_483() {
    let zero = |start: &str| request_mf(start, "", "", 0);
    assert_eq!(
        status(&decide(&zero("OPTIONS sip:192.0.2.9 SIP/2.0"), &routing())),
        200
    );
    assert_eq!(
        status(&decide(
            &zero("INVITE sip:+493055501000@x SIP/2.0"),
            &routing()
        )),
        483
    );
}

#[test]
fn content_we_cannot_take_is_refused() {
    let r = request(
        "INVITE sip:+493055501000@x SIP/2.0",
        "Content-Type: application/x-foo\r\n",
        "x",
    );
    assert_eq!(status(&decide(&r, &routing())), 415);
    let r = request(
        "INVITE sip:+493055501000@x SIP/2.0",
        "Accept: text/plain\r\n",
        "",
    );
    assert_eq!(status(&decide(&r, &routing())), 406);
    let r = request(
        "INVITE sip:+493055501000@x SIP/2.0",
        "Content-Type: application/sdp\r\n",
        "v=0\r\n",
    );
    assert_eq!(status(&decide(&r, &routing())), 302);
}

#[test]
fn non_sip_request_uri_is_416_and_bye_is_481() {
    assert_eq!(
        status(&decide(
            &request("OPTIONS soap.beep://192.0.2.1 SIP/2.0", "", ""),
            &routing()
        )),
        416
    );
    assert_eq!(
        status(&decide(
            &request("BYE sip:x@192.0.2.9 SIP/2.0", "", ""),
            &routing()
        )),
        481
    );
}
