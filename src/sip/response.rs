//! Building responses to a request (RFC 3261 §8.2.6): Via values in order, From, To (with our
//! tag on anything but 100, §8.2.6.2), Call-ID, CSeq, the caller's extra headers, and always
//! Content-Length (§20.14, required on streams).

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;

use super::error::ReplyHeaders;

/// Start a response to the request that `req` was taken from.
pub fn build_response<'a>(req: &'a ReplyHeaders, status: u16, reason: &str) -> ResponseBuilder<'a> {
    ResponseBuilder {
        req,
        status,
        reason: clean(reason),
        to_tag: None,
        extra: Vec::new(),
        body: None,
    }
}

/// A fresh To/From tag: 64 random bits as hex (§19.3 asks for at least 32).
pub fn generate_tag() -> String {
    format!("{:016x}", rand::thread_rng().r#gen::<u64>())
}

pub struct ResponseBuilder<'a> {
    req: &'a ReplyHeaders,
    status: u16,
    reason: String,
    to_tag: Option<String>,
    extra: Vec<(String, String)>,
    body: Option<(String, Bytes)>,
}

/// CR and LF in caller-supplied text would inject header lines; they become spaces.
fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

impl ResponseBuilder<'_> {
    /// Our tag for the To header; must be the same for every response of one transaction.
    /// Ignored when the request's To already has a tag. Without it a random tag is used.
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(clean(tag));
        self
    }

    /// An extra header (Contact, Allow, Supported, Unsupported, Retry-After, Server, ...),
    /// written after CSeq in call order.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((clean(name), clean(value)));
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((clean(content_type), body));
        self
    }

    pub fn build(self) -> Bytes {
        let req = self.req;
        let mut out = BytesMut::with_capacity(512);
        let mut line = |name: &str, value: &str| {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        };
        let status = format!("SIP/2.0 {} {}\r\n", self.status, self.reason);
        let mut head = BytesMut::from(status.as_bytes());
        for v in &req.vias {
            line("Via", v);
        }
        line("From", &req.from);
        if self.status > 100 && req.to_tag.is_none() {
            let tag = self.to_tag.unwrap_or_else(generate_tag);
            line("To", &format!("{};tag={tag}", req.to));
        } else {
            line("To", &req.to);
        }
        line("Call-ID", &req.call_id);
        line("CSeq", &req.cseq);
        for (n, v) in &req.echo {
            line(n, &clean(v));
        }
        for (n, v) in &self.extra {
            line(n, v);
        }
        let body = match self.body {
            Some((ct, b)) => {
                line("Content-Type", &ct);
                b
            }
            None => Bytes::new(),
        };
        line("Content-Length", &body.len().to_string());
        out.put_slice(b"\r\n");
        out.put_slice(&body);
        head.put_slice(&out);
        head.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Message, parse};

    fn reply() -> ReplyHeaders {
        ReplyHeaders {
            vias: vec![
                "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1".into(),
                "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2, SIP/2.0/TCP h;branch=z9hG4bK3".into(),
            ],
            from: "<sip:a@example.com>;tag=f".into(),
            to: "<sip:b@example.com>".into(),
            call_id: "c1".into(),
            cseq: "1 INVITE".into(),
            to_tag: None,
            echo: Vec::new(),
        }
    }

    #[test]
    fn redirect_copies_vias_and_adds_to_tag() {
        let r = reply();
        let b = build_response(&r, 302, "Moved Temporarily")
            .to_tag("abc")
            .header("Contact", "<sip:+4930111@198.51.100.1>")
            .build();
        let text = std::str::from_utf8(&b).unwrap();
        assert!(text.starts_with("SIP/2.0 302 Moved Temporarily\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 192.0.2.2"));
        assert!(text.contains("\r\nTo: <sip:b@example.com>;tag=abc\r\n"));
        assert!(
            text.ends_with("Contact: <sip:+4930111@198.51.100.1>\r\nContent-Length: 0\r\n\r\n")
        );
        let Message::Response(p) = parse(b).unwrap() else {
            panic!()
        };
        assert_eq!(p.status, 302);
        assert_eq!(p.vias().len(), 3);
        assert_eq!(p.to().tag(), Some("abc"));
    }

    #[test]
    fn trying_gets_no_to_tag_and_existing_tag_is_kept() {
        let r = reply();
        let t = build_response(&r, 100, "Trying").to_tag("x").build();
        assert!(!std::str::from_utf8(&t).unwrap().contains("tag=x"));
        let mut r = reply();
        r.to = "<sip:b@example.com>;tag=old".into();
        r.to_tag = Some("old".into());
        let t = build_response(&r, 200, "OK").to_tag("new").build();
        let text = std::str::from_utf8(&t).unwrap();
        assert!(text.contains("tag=old") && !text.contains("tag=new"));
    }

    #[test]
    fn missing_to_tag_is_generated() {
        let r = reply();
        let b = build_response(&r, 404, "Not Found").build();
        let Message::Response(p) = parse(b).unwrap() else {
            panic!()
        };
        assert_eq!(p.to().tag().map(str::len), Some(16));
    }

    #[test]
    fn body_sets_type_and_length() {
        let r = reply();
        let b = build_response(&r, 200, "OK")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build();
        let text = std::str::from_utf8(&b).unwrap();
        assert!(
            text.ends_with("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
        );
    }

    #[test]
    fn crlf_in_caller_text_cannot_inject_headers() {
        let r = reply();
        let b = build_response(&r, 480, "Gone\r\nX-Evil: 1")
            .header("Server", "a\r\nX-Evil: 2")
            .build();
        assert!(!std::str::from_utf8(&b).unwrap().contains("\r\nX-Evil"));
    }

    #[test]
    fn tags_are_random() {
        assert_ne!(generate_tag(), generate_tag());
    }
}
