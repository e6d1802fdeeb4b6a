//! A framed SIP message into typed values (RFC 3261 §7: start lines §7.1/§7.2, headers §7.3,
//! body §7.4/§7.5; request validation §8.2.1–§8.2.2 as far as it needs no UAS policy).
//!
//! Requests are validated so the UAS can rely on Call-ID, CSeq, From, To, Via, Max-Forwards and
//! Contact; anything else (schemes, Require, Content-Type) is policy for the UAS.

use std::fmt;

use bytes::Bytes;

use super::error::{ParseError, ReplyHeaders, SyntaxError};
use super::framing::split_head;
use super::header::{Headers, lines};
use super::name_addr::NameAddr;
use super::params::is_token;
use super::uri::Uri;
use super::via::Via;

/// `Debug` spells a known method and hides an extension token: any token is allowed there,
/// a number included.
#[derive(Clone, PartialEq, Eq)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token; methods are case-sensitive (§7.1), so `invite` lands here.
    Extension(String),
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Extension(_) => f.write_str("Extension(…)"),
            known => f.write_str(known.as_str()),
        }
    }
}

impl Method {
    pub fn from_token(t: &str) -> Self {
        match t {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "REGISTER" => Self::Register,
            "INFO" => Self::Info,
            "PRACK" => Self::Prack,
            "UPDATE" => Self::Update,
            "SUBSCRIBE" => Self::Subscribe,
            "NOTIFY" => Self::Notify,
            "REFER" => Self::Refer,
            "MESSAGE" => Self::Message,
            "PUBLISH" => Self::Publish,
            other => Self::Extension(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Info => "INFO",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Refer => "REFER",
            Self::Message => "MESSAGE",
            Self::Publish => "PUBLISH",
            Self::Extension(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

// Both variants are large and a message is moved a handful of times; boxing would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// `Debug` shows the structure (method, which headers, counts, lengths), never caller text.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
    call_id: String,
    cseq: CSeq,
    from: NameAddr,
    to: NameAddr,
    vias: Vec<Via>,
    max_forwards: Option<u8>,
    contacts: Vec<NameAddr>,
    contact_star: bool,
    reply: ReplyHeaders,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("call_id_len", &self.call_id.len())
            .field("cseq", &self.cseq)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("vias", &self.vias)
            .field("max_forwards", &self.max_forwards)
            .field("contacts", &self.contacts)
            .field("contact_star", &self.contact_star)
            .field("reply", &self.reply)
            .finish()
    }
}

impl Request {
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    pub fn cseq(&self) -> &CSeq {
        &self.cseq
    }
    pub fn from(&self) -> &NameAddr {
        &self.from
    }
    pub fn to(&self) -> &NameAddr {
        &self.to
    }
    /// At least one, topmost first.
    pub fn vias(&self) -> &[Via] {
        &self.vias
    }
    /// Values above 255 are clamped to 255 (RFC 4475 §3.1.2.4 allows ignoring them).
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }
    /// Contact values; empty for `Contact: *` (see `contact_is_star`).
    pub fn contacts(&self) -> &[NameAddr] {
        &self.contacts
    }
    pub fn contact_is_star(&self) -> bool {
        self.contact_star
    }
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("Content-Type")
    }
    /// Everything needed to answer this request (RFC 3261 §8.2.6.2).
    pub fn reply_headers(&self) -> &ReplyHeaders {
        &self.reply
    }
}

/// `Debug` as for [`Request`]: status and structure, no header text.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    /// May be empty; decoded lossily if not UTF-8.
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
    call_id: String,
    cseq: CSeq,
    from: NameAddr,
    to: NameAddr,
    vias: Vec<Via>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason_len", &self.reason.len())
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("call_id_len", &self.call_id.len())
            .field("cseq", &self.cseq)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("vias", &self.vias)
            .finish()
    }
}

impl Response {
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    pub fn cseq(&self) -> &CSeq {
        &self.cseq
    }
    pub fn from(&self) -> &NameAddr {
        &self.from
    }
    pub fn to(&self) -> &NameAddr {
        &self.to
    }
    pub fn vias(&self) -> &[Via] {
        &self.vias
    }
}

/// Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.3.8, §3.3.9).
const SINGLE: &[&str] = &[
    "Call-ID",
    "To",
    "From",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
];

/// Parses one framed message (from `frame_datagram` or `StreamDecoder`). Every error on a
/// response carries `reply: None`: responses are never answered (RFC 4475 §3.1.2.19).
pub fn parse(frame: Bytes) -> Result<Message, ParseError> {
    let (head_len, body_start) = split_head(&frame).unwrap_or((frame.len(), frame.len()));
    let head = &frame[..head_len];
    let start_len = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let start = lines(&head[..start_len]).next().unwrap_or_default();
    let is_response = start.starts_with(b"SIP/");
    let fail = |status, reason| ParseError {
        status,
        reason,
        reply: None,
    };
    let headers =
        Headers::parse(&head[start_len..]).map_err(|_| fail(400, "malformed header line"))?;
    let reply = if is_response {
        None
    } else {
        reply_headers(&headers)
    };
    let err = |status: u16, reason: &'static str| ParseError {
        status,
        reason,
        reply: reply.clone().map(Box::new),
    };
    let body = cut_body(&frame, body_start, &headers).map_err(|r| err(400, r))?;
    if is_response {
        return parse_response(start, headers, body).map(Message::Response);
    }
    let (method, uri) = request_line(start).map_err(|(s, r)| err(s, r))?;
    let Some(reply) = reply.clone() else {
        return Err(err(400, "missing Via, From, To, Call-ID or CSeq"));
    };
    let common = common_headers(&headers).map_err(|r| err(400, r))?;
    if common.cseq.method != method {
        // An unknown method cannot be served anyway; 501 tells the client why (§3.1.2.18).
        return Err(if matches!(method, Method::Extension(_)) {
            err(501, "unknown method with CSeq mismatch")
        } else {
            err(400, "CSeq method differs from request method")
        });
    }
    let max_forwards = match headers.get("Max-Forwards") {
        None => None,
        Some(v) => Some(max_forwards(v).ok_or_else(|| err(400, "malformed Max-Forwards"))?),
    };
    let mut contacts = Vec::new();
    let mut contact_star = false;
    for c in headers.get_all("Contact") {
        if c == "*" {
            contact_star = true;
        } else {
            contacts.push(NameAddr::parse(c).map_err(|_| err(400, "malformed Contact"))?);
        }
    }
    Ok(Message::Request(Request {
        method,
        uri,
        headers,
        body,
        call_id: common.call_id,
        cseq: common.cseq,
        from: common.from,
        to: common.to,
        vias: common.vias,
        max_forwards,
        contacts,
        contact_star,
        reply,
    }))
}

/// The raw values needed for an error response, if all of them are present.
fn reply_headers(h: &Headers) -> Option<ReplyHeaders> {
    let vias: Vec<String> = h.lines_of("Via").map(str::to_owned).collect();
    let first = |n: &str| h.get(n).filter(|v| !v.is_empty()).map(str::to_owned);
    let to = first("To")?;
    let to_tag = NameAddr::parse(&to)
        .ok()
        .and_then(|n| n.tag().map(str::to_owned));
    if vias.iter().all(String::is_empty) {
        return None;
    }
    Some(ReplyHeaders {
        vias,
        from: first("From")?,
        to,
        call_id: first("Call-ID")?,
        cseq: first("CSeq")?,
        to_tag,
        echo: Vec::new(),
    })
}

/// Checks Content-Length against the octets present and cuts any excess (§18.3).
fn cut_body(frame: &Bytes, body_start: usize, h: &Headers) -> Result<Bytes, &'static str> {
    let available = frame.len() - body_start;
    let n = match h.count("Content-Length") {
        0 => available,
        1 => {
            let v = h.get("Content-Length").unwrap_or_default();
            if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err("malformed Content-Length");
            }
            v.parse().map_err(|_| "malformed Content-Length")?
        }
        _ => return Err("repeated Content-Length"),
    };
    if n > available {
        return Err("body shorter than Content-Length");
    }
    Ok(frame.slice(body_start..body_start + n))
}

/// `Method SP Request-URI SP SIP-Version` with exactly one SP each (§7.1, RFC 4475 §3.1.2.9,
/// §3.1.2.10).
fn request_line(line: &[u8]) -> Result<(Method, Uri), (u16, &'static str)> {
    let bad = |r| (400, r);
    let line = std::str::from_utf8(line).map_err(|_| bad("request line not UTF-8"))?;
    let (method, rest) = line.split_once(' ').ok_or(bad("malformed request line"))?;
    let (uri, version) = rest.rsplit_once(' ').ok_or(bad("malformed request line"))?;
    if !is_token(method) {
        return Err(bad("malformed method"));
    }
    if version != "SIP/2.0" {
        return Err(if is_version(version) {
            (505, "unsupported SIP version")
        } else {
            bad("malformed SIP version")
        });
    }
    if uri.contains([' ', '\t']) {
        return Err(bad("whitespace in Request-URI"));
    }
    let uri = Uri::parse(uri).map_err(|e| match e {
        SyntaxError::Host => bad("malformed Request-URI host"),
        _ => bad("malformed Request-URI"),
    })?;
    // Table 1 of §19.1.1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
    if uri.as_sip().is_some_and(|u| !u.headers.is_empty()) {
        return Err(bad("headers in Request-URI"));
    }
    Ok((Method::from_token(method), uri))
}

/// `SIP/1*DIGIT.1*DIGIT`, case-insensitive protocol name (§7.1).
fn is_version(v: &str) -> bool {
    let Some(num) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and(v.get(4..))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    num.split_once('.')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

struct Common {
    call_id: String,
    cseq: CSeq,
    from: NameAddr,
    to: NameAddr,
    vias: Vec<Via>,
}

fn common_headers(h: &Headers) -> Result<Common, &'static str> {
    if SINGLE.iter().any(|n| h.count(n) > 1) {
        return Err("repeated single-value header");
    }
    let call_id = h.get("Call-ID").ok_or("missing Call-ID")?;
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err("malformed Call-ID");
    }
    let cseq = cseq(h.get("CSeq").ok_or("missing CSeq")?).ok_or("malformed CSeq")?;
    let from =
        NameAddr::parse(h.get("From").ok_or("missing From")?).map_err(|_| "malformed From")?;
    let to = NameAddr::parse(h.get("To").ok_or("missing To")?).map_err(|_| "malformed To")?;
    let vias = h
        .get_all("Via")
        .into_iter()
        .map(Via::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "malformed Via")?;
    if vias.is_empty() {
        return Err("missing Via");
    }
    Ok(Common {
        call_id: call_id.to_owned(),
        cseq,
        from,
        to,
        vias,
    })
}

/// `1*DIGIT LWS Method`; the number must fit 32 bits (§8.1.1.5, RFC 4475 §3.1.2.4).
fn cseq(v: &str) -> Option<CSeq> {
    let (num, method) = v.split_once([' ', '\t'])?;
    let method = method.trim_matches([' ', '\t']);
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
        return None;
    }
    let seq = num.trim_start_matches('0');
    let seq = if seq.is_empty() { 0 } else { seq.parse().ok()? };
    Some(CSeq {
        seq,
        method: Method::from_token(method),
    })
}

fn max_forwards(v: &str) -> Option<u8> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = v.trim_start_matches('0');
    Some(if v.len() > 3 {
        u8::MAX
    } else {
        v.parse::<u16>().unwrap_or(0).min(255) as u8
    })
}

/// `SIP/2.0 SP 3DIGIT SP Reason-Phrase` (§7.2); codes outside 100–699 are dropped.
fn parse_response(line: &[u8], headers: Headers, body: Bytes) -> Result<Response, ParseError> {
    let drop = |reason| ParseError {
        status: 400,
        reason,
        reply: None,
    };
    let rest = line
        .strip_prefix(b"SIP/2.0 ")
        .ok_or(drop("unsupported response version"))?;
    let (code, reason) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => return Err(drop("malformed status line")),
    };
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(drop("malformed status code"));
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=699).contains(&status) {
        return Err(drop("status code out of range"));
    }
    let common = common_headers(&headers).map_err(drop)?;
    Ok(Response {
        status,
        reason: String::from_utf8_lossy(reason).into_owned(),
        headers,
        body,
        call_id: common.call_id,
        cseq: common.cseq,
        from: common.from,
        to: common.to,
        vias: common.vias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Request, ParseError> {
        match parse(Bytes::from(s.to_owned()))? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => panic!("not a request"),
        }
    }

    const BASE: &str = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn minimal_options_parses() {
        let r = req(&format!("OPTIONS sip:b@example.com SIP/2.0\r\n{BASE}")).unwrap();
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.cseq().seq, 1);
        assert_eq!(r.from().tag(), Some("1"));
        assert_eq!(r.vias().len(), 1);
        assert_eq!(r.call_id(), "c1");
        assert!(r.body.is_empty());
    }

    #[test]
    fn lowercase_method_is_extension() {
        assert_eq!(
            Method::from_token("invite"),
            Method::Extension("invite".into())
        );
        assert_eq!(Method::from_token("RE%47IST%45R").as_str(), "RE%47IST%45R");
    }

    #[test]
    fn unknown_version_is_505_with_reply() {
        let e = req(&format!("OPTIONS sip:b@example.com SIP/3.0\r\n{BASE}")).unwrap_err();
        assert_eq!(e.status, 505);
        assert!(e.reply.is_some());
    }

    #[test]
    fn cseq_over_32_bits_is_400() {
        let m = format!("OPTIONS sip:b@example.com SIP/2.0\r\n{BASE}")
            .replace("CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS");
        assert_eq!(req(&m).unwrap_err().status, 400);
        let m = m.replace("4294967296", "4294967295");
        assert_eq!(req(&m).unwrap().cseq().seq, u32::MAX);
    }

    #[test]
    fn max_forwards_clamps_and_rejects_junk() {
        assert_eq!(max_forwards("0068"), Some(68));
        assert_eq!(max_forwards("300"), Some(255));
        assert_eq!(max_forwards("99999999999999"), Some(255));
        assert_eq!(max_forwards("-1"), None);
    }

    #[test]
    fn missing_headers_leave_no_reply() {
        let e =
            req("INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\n\r\n")
                .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.reply.is_none());
    }

    #[test]
    fn error_display_and_debug_never_echo_input() {
        let m = format!("OPTIONS sip:+4930999@example.com SIP/2.0\r\n{BASE}")
            .replace("Call-ID: c1", "Call-ID: secret-callid\r\nCall-ID: x");
        let e = req(&m).unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert!(!format!("{e:?}").contains("secret"));
        assert!(!format!("{e:?}").contains("4930999"));
    }

    #[test]
    fn response_with_empty_reason_parses() {
        let m = format!("SIP/2.0 180 \r\n{BASE}");
        let Message::Response(r) = parse(Bytes::from(m)).unwrap() else {
            panic!()
        };
        assert_eq!(r.status, 180);
        assert_eq!(r.reason, "");
    }

    #[test]
    fn response_code_out_of_range_is_dropped() {
        for line in [
            "SIP/2.0 099 x",
            "SIP/2.0 700 x",
            "SIP/2.0 1000 x",
            "SIP/2.0 20 x",
        ] {
            let e = parse(Bytes::from(format!("{line}\r\n{BASE}"))).unwrap_err();
            assert!(e.reply.is_none(), "{line}");
        }
    }

    #[test]
    fn body_longer_than_content_length_is_cut() {
        let m = format!("OPTIONS sip:b@example.com SIP/2.0\r\n{BASE}")
            .replace("Content-Length: 0", "Content-Length: 2")
            + "abcdef";
        assert_eq!(&req(&m).unwrap().body[..], b"ab");
    }

    #[test]
    fn contact_star_is_recognised() {
        let m = format!("OPTIONS sip:b@example.com SIP/2.0\r\nContact: *\r\n{BASE}");
        let r = req(&m).unwrap();
        assert!(r.contact_is_star());
        assert!(r.contacts().is_empty());
    }
}
