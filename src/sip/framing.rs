//! Cutting transport bytes into single SIP messages (RFC 3261 §18.3, §7.5; RFC 5626 §4.4.1
//! CRLF keepalives). UDP: one datagram, body cut to Content-Length. TCP: a `Decoder` that
//! frames by Content-Length with bounded buffering.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::error::FramingError;
use super::header::{canonical, lines};

/// Longest Content-Length value we read; more digits cannot fit any size limit.
const MAX_LENGTH_DIGITS: usize = 10;

/// Where the header section ends: `(head_len, body_start)`. `head_len` includes the last header
/// line's terminator; `body_start` is after the empty line. CRLF and bare LF are both accepted.
pub(crate) fn split_head(buf: &[u8]) -> Option<(usize, usize)> {
    split_head_from(buf, 0)
}

fn split_head_from(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match &buf[i + 1..] {
                [b'\n', ..] => return Some((i + 1, i + 2)),
                [b'\r', b'\n', ..] => return Some((i + 1, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Content-Length of a header section. `Ok(None)` if absent; `Err` if negative, non-numeric,
/// or repeated with different values (RFC 4475 §3.1.2.3, §3.3.9). Folded values are joined.
pub(crate) fn content_length(head: &[u8]) -> Result<Option<usize>, ()> {
    let mut found: Option<usize> = None;
    let mut in_cl = false;
    let mut pending: Option<Vec<u8>> = None;
    let finish = |v: Option<Vec<u8>>, found: &mut Option<usize>| -> Result<(), ()> {
        let Some(v) = v else { return Ok(()) };
        let t = v.trim_ascii();
        if t.is_empty() || t.len() > MAX_LENGTH_DIGITS || !t.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n: usize = std::str::from_utf8(t)
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ())?;
        match *found {
            Some(prev) if prev != n => Err(()),
            _ => {
                *found = Some(n);
                Ok(())
            }
        }
    };
    // The first line is the start line; skip it.
    for line in lines(head).skip(1) {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if in_cl && let Some(p) = pending.as_mut() {
                p.push(b' ');
                p.extend_from_slice(line);
            }
            continue;
        }
        finish(pending.take(), &mut found)?;
        in_cl = false;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(line[..colon].trim_ascii_end());
        if canonical(&name) == "Content-Length" {
            in_cl = true;
            pending = Some(line[colon + 1..].to_vec());
        }
    }
    finish(pending.take(), &mut found)?;
    Ok(found)
}

fn leading_line_breaks(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// Frames one UDP datagram. Leading CRLFs (keepalives) are skipped; octets after
/// Content-Length are ignored (RFC 3261 §18.3); without Content-Length the body is the rest of
/// the datagram. A datagram that ends without the empty line is taken as all headers.
pub fn frame_datagram(buf: &[u8], max_size: usize) -> Result<Bytes, FramingError> {
    let buf = &buf[leading_line_breaks(buf)..];
    if buf.is_empty() {
        return Err(FramingError::Keepalive);
    }
    let whole = || Bytes::copy_from_slice(buf);
    if buf.len() > max_size {
        return Err(FramingError::TooLarge {
            frame: Some(whole()),
        });
    }
    let (head_len, body_start) = split_head(buf).unwrap_or((buf.len(), buf.len()));
    match content_length(&buf[..head_len]) {
        Err(()) => Err(FramingError::BadLength { frame: whole() }),
        Ok(None) => Ok(whole()),
        Ok(Some(n)) if n > buf.len() - body_start => {
            Err(FramingError::Truncated { frame: whole() })
        }
        Ok(Some(n)) => Ok(Bytes::copy_from_slice(&buf[..body_start + n])),
    }
}

/// TCP/TLS stream framing. Each item is one message (header section and body).
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    max_size: usize,
    /// How far the buffer was searched for the empty line, so partial reads stay linear.
    scanned: usize,
    /// Line-break octets skipped since the last message or ping.
    breaks: usize,
}

/// What a stream yields: a framed message, or a double-CRLF keepalive ping (RFC 5626 §4.4.1)
/// that the shell answers with a single CRLF pong.
#[derive(Clone, PartialEq, Eq)]
pub enum StreamItem {
    Message(Bytes),
    Ping,
}

impl std::fmt::Debug for StreamItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The bytes are raw wire text: only their length is shown.
            Self::Message(m) => write!(f, "Message({} bytes)", m.len()),
            Self::Ping => f.write_str("Ping"),
        }
    }
}

impl StreamDecoder {
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size,
            scanned: 0,
            breaks: 0,
        }
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }
}

impl Decoder for StreamDecoder {
    type Item = StreamItem;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<StreamItem>, FramingError> {
        if self.scanned == 0 {
            // Count line-break octets across reads: a ping may arrive split. Exactly four are
            // consumed per ping, so CRLFs beyond it count towards the next one.
            let skip = leading_line_breaks(src).min(4 - self.breaks);
            self.breaks += skip;
            src.advance(skip);
            if self.breaks >= 4 {
                self.breaks = 0;
                return Ok(Some(StreamItem::Ping));
            }
            if src.is_empty() {
                return Ok(None);
            }
            self.breaks = 0;
        }
        let Some((head_len, body_start)) = split_head_from(src, self.scanned.saturating_sub(2))
        else {
            self.scanned = src.len();
            if src.len() > self.max_size {
                return Err(FramingError::TooLarge { frame: None });
            }
            return Ok(None);
        };
        let head = || Bytes::copy_from_slice(&src[..head_len]);
        // Content-Length is mandatory on streams (§20.14); treat a missing one as 0.
        let n = match content_length(&src[..head_len]) {
            Ok(n) => n.unwrap_or(0),
            Err(()) => return Err(FramingError::BadLength { frame: head() }),
        };
        let total = body_start.saturating_add(n);
        if total > self.max_size {
            return Err(FramingError::TooLarge {
                frame: Some(head()),
            });
        }
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(StreamItem::Message(src.split_to(total).freeze())))
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn datagram_body_is_cut_to_content_length() {
        let mut d = MSG.to_vec();
        d.extend_from_slice(b"INVITE junk");
        assert_eq!(&frame_datagram(&d, 4096).unwrap()[..], MSG);
    }

    #[test]
    fn leading_crlf_keepalives_are_skipped() {
        let mut d = b"\r\n\r\n".to_vec();
        d.extend_from_slice(MSG);
        assert_eq!(&frame_datagram(&d, 4096).unwrap()[..], MSG);
        assert!(matches!(
            frame_datagram(b"\r\n\r\n", 4096),
            Err(FramingError::Keepalive)
        ));
        assert!(matches!(
            frame_datagram(b"", 4096),
            Err(FramingError::Keepalive)
        ));
    }

    #[test]
    fn missing_content_length_on_udp_takes_rest() {
        let d = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nbody";
        assert_eq!(&frame_datagram(d, 4096).unwrap()[..], d);
    }

    #[test]
    fn compact_and_folded_content_length_are_read() {
        let d = b"OPTIONS sip:a@b SIP/2.0\r\nl:\r\n 2\r\n\r\nabcd";
        assert_eq!(frame_datagram(d, 4096).unwrap().len(), d.len() - 2);
    }

    #[test]
    fn bare_lf_head_is_framed() {
        let d = b"OPTIONS sip:a@b SIP/2.0\nl: 2\n\nabcd";
        assert_eq!(
            &frame_datagram(d, 4096).unwrap()[..],
            b"OPTIONS sip:a@b SIP/2.0\nl: 2\n\nab"
        );
    }

    #[test]
    fn content_length_edge_cases_are_errors_with_frame() {
        let base = "OPTIONS sip:a@b SIP/2.0\r\n";
        for cl in ["-1", "abc", "", "99999999999", "1\r\nContent-Length: 2"] {
            let d = format!("{base}Content-Length: {cl}\r\n\r\nab");
            let e = frame_datagram(d.as_bytes(), 4096).unwrap_err();
            assert!(matches!(e, FramingError::BadLength { .. }), "{cl}");
            assert!(e.frame().is_some());
        }
        let d = format!("{base}Content-Length: 3\r\nl: 3\r\n\r\nabc");
        assert!(frame_datagram(d.as_bytes(), 4096).is_ok());
        let d = format!("{base}Content-Length: 30\r\n\r\nabc");
        assert!(matches!(
            frame_datagram(d.as_bytes(), 4096),
            Err(FramingError::Truncated { .. })
        ));
    }

    #[test]
    fn oversized_datagram_is_too_large() {
        assert!(matches!(
            frame_datagram(MSG, 10),
            Err(FramingError::TooLarge { frame: Some(_) })
        ));
    }

    #[test]
    fn errors_never_echo_input() {
        let e =
            frame_datagram(b"INVITE sip:+4930123@x SIP/2.0\r\nl: -5\r\n\r\n", 4096).unwrap_err();
        assert!(!e.to_string().contains("4930123"));
    }

    #[test]
    fn stream_decoder_byte_by_byte() {
        let mut dec = StreamDecoder::new(4096);
        let mut buf = BytesMut::new();
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        let mut out = Vec::new();
        for b in stream {
            buf.extend_from_slice(&[b]);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        let message = StreamItem::Message(Bytes::from_static(MSG));
        assert_eq!(out, [StreamItem::Ping, message.clone(), message]);
        assert!(buf.is_empty());
    }

    #[test]
    fn each_double_crlf_is_one_ping_and_a_single_crlf_is_none() {
        let mut dec = StreamDecoder::new(4096);
        let mut buf = BytesMut::from(&b"\r\n\r\n\r\n\r\n\r\n"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(StreamItem::Ping));
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(StreamItem::Ping));
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            None,
            "a lone CRLF is not a ping"
        );
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(MSG);
        assert!(matches!(
            dec.decode(&mut buf).unwrap(),
            Some(StreamItem::Message(_))
        ));
    }

    #[test]
    fn stream_decoder_waits_for_body() {
        let mut dec = StreamDecoder::new(4096);
        let mut buf = BytesMut::from(&MSG[..MSG.len() - 2]);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&MSG[MSG.len() - 2..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(StreamItem::Message(Bytes::from_static(MSG)))
        );
    }

    #[test]
    fn stream_missing_content_length_means_empty_body() {
        let mut dec = StreamDecoder::new(4096);
        let mut buf = BytesMut::from(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nOPTIONS"[..]);
        let Some(StreamItem::Message(m)) = dec.decode(&mut buf).unwrap() else {
            panic!("a message")
        };
        assert!(m.ends_with(b"\r\n\r\n"));
        assert_eq!(&buf[..], b"OPTIONS");
    }

    #[test]
    fn stream_head_without_end_beyond_limit_errors() {
        let mut dec = StreamDecoder::new(64);
        let mut buf = BytesMut::from(&[b'a'; 65][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FramingError::TooLarge { frame: None })
        ));
    }

    #[test]
    fn stream_body_beyond_limit_errors_without_waiting() {
        let mut dec = StreamDecoder::new(128);
        let mut buf = BytesMut::from(&b"INVITE sip:a@b SIP/2.0\r\nl: 4000000000\r\n\r\n"[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FramingError::TooLarge { frame: Some(_) })
        ));
        assert!(buf.capacity() < 4096);
    }

    #[test]
    fn stream_negative_content_length_errors() {
        let mut dec = StreamDecoder::new(4096);
        let mut buf = BytesMut::from(&b"INVITE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n"[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FramingError::BadLength { .. })
        ));
    }
}
