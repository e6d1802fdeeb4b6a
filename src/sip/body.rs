//! The session description in a request body (RFC 3261 §7.4, §20.11; RFC 5621): either the whole
//! body is `application/sdp`, or it is one part of a `multipart/*` body (RFC 2046 §5.1). SIP-I
//! carriers (ITU-T Q.1912.5, RFC 3204) send the ISUP message as `application/isup` beside the
//! SDP; a redirect server has no use for it (the carrier hands its own ISUP to the destination),
//! so ISUP and QSIG parts are understood as "not ours to act on" and skipped. Any other part we
//! cannot interpret, whose Content-Disposition `handling` is `required` (the default, RFC 5621
//! §9), makes the request unacceptable (415). Sans-IO: bytes in, the SDP bytes out.

use bytes::Bytes;

use super::params::parse_header_params;

/// Media types whose parts we skip without reading them.
const SKIPPED: &[&str] = &["application/isup", "application/qsig"];

/// Nested multiparts deeper than this are refused (a bound, not a real-world shape).
const MAX_DEPTH: usize = 3;

/// Why a body cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A (required) part or the whole body is of a type we do not understand: 415.
    #[error("unsupported body type")]
    Unsupported,
    /// A multipart body without a usable boundary or delimiters: 400.
    #[error("malformed multipart body")]
    Malformed,
}

/// What the `Accept` header of a 415 lists.
pub const ACCEPTED: &str = "application/sdp, multipart/mixed";

/// The SDP offer in a body with this Content-Type, if there is one. An empty body is no offer.
pub fn sdp(content_type: Option<&str>, body: &Bytes) -> Result<Option<Bytes>, BodyError> {
    if body.is_empty() {
        return Ok(None);
    }
    let Some(content_type) = content_type else {
        // §7.4.1: a body needs a Content-Type.
        return Err(BodyError::Unsupported);
    };
    find_sdp(content_type, body, 0)
}

fn find_sdp(content_type: &str, body: &Bytes, depth: usize) -> Result<Option<Bytes>, BodyError> {
    let (media, params) = split_media_type(content_type);
    if media == "application/sdp" {
        return Ok(Some(body.clone()));
    }
    if !media.starts_with("multipart/") {
        return Err(BodyError::Unsupported);
    }
    if depth >= MAX_DEPTH {
        return Err(BodyError::Unsupported);
    }
    let boundary = parse_header_params(params)
        .ok()
        .and_then(|p| p.value("boundary").map(unquote))
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or(BodyError::Malformed)?;
    let mut found = None;
    for part in parts(body, boundary.as_bytes())? {
        let part_type = part.content_type.as_deref().unwrap_or("text/plain");
        let (part_media, _) = split_media_type(part_type);
        if SKIPPED.contains(&part_media.as_str()) {
            continue;
        }
        match find_sdp(part_type, &part.body, depth + 1) {
            Ok(Some(sdp)) => {
                // The first offer wins; a second SDP part is an alternative we do not need.
                if found.is_none() {
                    found = Some(sdp);
                }
            }
            Ok(None) => {}
            Err(BodyError::Unsupported) if !part.required => {}
            Err(err) => return Err(err),
        }
    }
    Ok(found)
}

/// `type/subtype` lowercased, and the parameter text from the first `;`.
fn split_media_type(value: &str) -> (String, &str) {
    match value.find(';') {
        Some(i) => (value[..i].trim().to_ascii_lowercase(), &value[i..]),
        None => (value.trim().to_ascii_lowercase(), ""),
    }
}

fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

struct Part {
    content_type: Option<String>,
    /// RFC 5621 §9: `handling` defaults to required.
    required: bool,
    body: Bytes,
}

/// The body parts between `--boundary` delimiter lines (RFC 2046 §5.1.1). Preamble and epilogue
/// are ignored; a body without a closing delimiter is malformed.
fn parts(body: &Bytes, boundary: &[u8]) -> Result<Vec<Part>, BodyError> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    let starts = delimiter_lines(body, &delimiter);
    let mut out = Vec::new();
    let mut closed = false;
    for pair in starts.windows(2) {
        let (at, next) = (pair[0], pair[1]);
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            closed = true;
            break;
        }
        // The part starts after the delimiter line's CRLF and ends before the CRLF that
        // belongs to the next delimiter.
        let Some(line_end) = find(&body[after..next], b"\r\n") else {
            return Err(BodyError::Malformed);
        };
        let start = after + line_end + 2;
        let end = next.saturating_sub(2).max(start);
        out.push(part(body.slice(start..end))?);
    }
    if !closed {
        // The last delimiter seen must be the closing one.
        match starts.last() {
            Some(&at) if body[at + delimiter.len()..].starts_with(b"--") => {}
            _ => return Err(BodyError::Malformed),
        }
    }
    Ok(out)
}

/// Offsets of delimiter lines: at the start of the body or right after a CRLF.
fn delimiter_lines(body: &[u8], delimiter: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = find(&body[from..], delimiter) {
        let at = from + i;
        if at == 0 || body[..at].ends_with(b"\r\n") {
            out.push(at);
        }
        from = at + delimiter.len();
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn part(bytes: Bytes) -> Result<Part, BodyError> {
    // A part with no headers starts with its blank line.
    let (head, body) = if bytes.starts_with(b"\r\n") {
        (&b""[..], bytes.slice(2..))
    } else {
        let i = find(&bytes, b"\r\n\r\n").ok_or(BodyError::Malformed)?;
        (&bytes[..i], bytes.slice(i + 4..))
    };
    let head = std::str::from_utf8(head).map_err(|_| BodyError::Malformed)?;
    let mut content_type = None;
    let mut required = true;
    for line in head.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            return Err(BodyError::Malformed);
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" | "c" => content_type = Some(value.to_owned()),
            "content-disposition" => {
                let params = value.find(';').map_or("", |i| &value[i..]);
                if let Ok(params) = parse_header_params(params) {
                    required = !params
                        .value("handling")
                        .is_some_and(|h| h.eq_ignore_ascii_case("optional"));
                }
            }
            _ => {}
        }
    }
    Ok(Part {
        content_type,
        required,
        body,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    fn sip_i(isup_handling: &str) -> (String, Bytes) {
        let body = format!(
            "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--unique-boundary-1\r\nContent-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;handling={isup_handling}\r\n\r\n\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10\x00\x33\x63\x21\x43\x00\x00\x03\r\n--unique-boundary-1--\r\n"
        );
        (
            "multipart/mixed;boundary=unique-boundary-1".to_owned(),
            Bytes::from(body),
        )
    }

    #[test]
    fn a_plain_sdp_body_is_the_offer() {
        let body = Bytes::from_static(SDP.as_bytes());
        assert_eq!(sdp(Some("application/sdp"), &body).unwrap().unwrap(), body);
        assert_eq!(
            sdp(Some("Application/SDP; charset=x"), &body)
                .unwrap()
                .unwrap(),
            body
        );
    }

    #[test]
    fn the_sdp_part_of_a_sip_i_body_is_taken_and_isup_skipped() {
        for handling in ["required", "optional"] {
            let (ct, body) = sip_i(handling);
            let offer = sdp(Some(&ct), &body).unwrap().unwrap();
            assert_eq!(offer, SDP.as_bytes(), "handling={handling}");
        }
    }

    #[test]
    fn a_quoted_boundary_and_a_preamble_are_handled() {
        let body = format!(
            "This is a multipart message.\r\n--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b1--"
        );
        let offer = sdp(Some("multipart/mixed; boundary=\"b1\""), &Bytes::from(body))
            .unwrap()
            .unwrap();
        assert_eq!(offer, SDP.as_bytes());
    }

    #[test]
    fn an_unknown_required_part_is_refused_and_an_optional_one_skipped() {
        let body = |handling: &str| {
            Bytes::from(format!(
                "--b\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b\r\nContent-Type: application/x-secret\r\nContent-Disposition: render;handling={handling}\r\n\r\nzzz\r\n--b--\r\n"
            ))
        };
        assert_eq!(
            sdp(Some("multipart/mixed;boundary=b"), &body("required")),
            Err(BodyError::Unsupported)
        );
        assert!(
            sdp(Some("multipart/mixed;boundary=b"), &body("optional"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn isup_alone_is_no_offer() {
        let body = Bytes::from_static(
            b"--b\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n\x01\x02\r\n--b--\r\n",
        );
        assert_eq!(sdp(Some("multipart/mixed;boundary=b"), &body), Ok(None));
    }

    #[test]
    fn broken_multiparts_are_malformed() {
        let sdp_part = format!("--b\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n");
        for (ct, body) in [
            ("multipart/mixed", sdp_part.clone()),
            ("multipart/mixed;boundary=b", sdp_part.clone()),
            ("multipart/mixed;boundary=zz", sdp_part),
        ] {
            assert_eq!(
                sdp(Some(ct), &Bytes::from(body)),
                Err(BodyError::Malformed),
                "{ct}"
            );
        }
    }

    #[test]
    fn other_types_and_missing_content_type_are_unsupported() {
        let body = Bytes::from_static(b"hello");
        assert_eq!(sdp(Some("text/plain"), &body), Err(BodyError::Unsupported));
        assert_eq!(sdp(None, &body), Err(BodyError::Unsupported));
        assert_eq!(sdp(None, &Bytes::new()), Ok(None));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 7u64;
        for _ in 0..2000 {
            let len = usize::try_from(seed % 64).unwrap();
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    b"-b\r\n:;=ac"[usize::try_from(seed >> 60).unwrap() % 10]
                })
                .collect();
            let _ = sdp(Some("multipart/mixed;boundary=b"), &Bytes::from(bytes));
        }
    }
}
