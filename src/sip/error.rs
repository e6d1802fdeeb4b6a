//! Error types of the SIP wire layer (RFC 3261 §8.2, §18.3, §21.4).
//!
//! Every `Display` text is a fixed phrase: nothing from the wire is ever echoed, so an error can be
//! logged or counted without leaking numbers, names or addresses. `Debug` of the types that carry
//! wire text is redacted for the same reason.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

/// Why bytes from a transport could not be cut into one SIP message.
#[derive(Error)]
pub enum FramingError {
    /// The datagram held only CRLF keepalives (RFC 5626 §4.4.1); nothing to answer.
    #[error("keepalive only")]
    Keepalive,
    /// The message exceeds the configured size; `frame` (when present) still lets the caller
    /// try `parse` and answer 513 Message Too Large.
    #[error("message exceeds the size limit")]
    TooLarge { frame: Option<Bytes> },
    /// Content-Length promises more octets than arrived (RFC 3261 §18.3: answer 400 on UDP).
    #[error("body shorter than Content-Length")]
    Truncated { frame: Bytes },
    /// Content-Length is negative, non-numeric or given twice with different values.
    #[error("unusable Content-Length")]
    BadLength { frame: Bytes },
    /// The stream broke; the connection has to be closed.
    #[error("transport read failed")]
    Io(#[from] std::io::Error),
}

impl FramingError {
    /// The octets received, when they are worth handing to `parse` to form an error response.
    pub fn frame(&self) -> Option<&Bytes> {
        match self {
            Self::TooLarge { frame } => frame.as_ref(),
            Self::Truncated { frame } | Self::BadLength { frame } => Some(frame),
            Self::Keepalive | Self::Io(_) => None,
        }
    }
}

// The frames are raw caller bytes: `Debug` gives their length only.
impl fmt::Debug for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keepalive => f.write_str("Keepalive"),
            Self::TooLarge { frame } => f
                .debug_struct("TooLarge")
                .field("frame_len", &frame.as_ref().map(Bytes::len))
                .finish(),
            Self::Truncated { frame } => f
                .debug_struct("Truncated")
                .field("frame_len", &frame.len())
                .finish(),
            Self::BadLength { frame } => f
                .debug_struct("BadLength")
                .field("frame_len", &frame.len())
                .finish(),
            // The kind only: an OS error text is fixed words, but a custom one need not be.
            Self::Io(e) => f.debug_tuple("Io").field(&e.kind()).finish(),
        }
    }
}

/// A grammar violation inside one element (URI, name-addr, Via, header block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SyntaxError {
    #[error("empty value")]
    Empty,
    #[error("bad URI scheme")]
    Scheme,
    #[error("bad URI user part")]
    User,
    #[error("bad host")]
    Host,
    #[error("bad port")]
    Port,
    #[error("bad parameter")]
    Param,
    #[error("bad URI header")]
    UriHeader,
    #[error("unexpected whitespace")]
    Whitespace,
    #[error("unterminated quoted string")]
    Quote,
    #[error("bad display name")]
    Display,
    #[error("unbalanced angle brackets")]
    Brackets,
    #[error("bad telephone number")]
    Number,
    #[error("bad sent-protocol")]
    Protocol,
    #[error("bad header line")]
    HeaderLine,
    #[error("bad header name")]
    HeaderName,
}

/// Part of a request's header set, kept verbatim, needed to answer with an error response
/// (RFC 3261 §8.2.6.2). Present only when Via, From, To, Call-ID and CSeq are all there.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplyHeaders {
    /// Every Via header line's value, in order of appearance.
    pub vias: Vec<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: String,
    /// The To tag, when the To value parses and carries one.
    pub to_tag: Option<String>,
    /// Headers every response to this request carries after CSeq (the edge sets them, e.g.
    /// the media-security answer of `mediasec.rs`); empty from the parser.
    pub echo: Vec<(&'static str, String)>,
}

impl fmt::Debug for ReplyHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyHeaders")
            .field("vias", &self.vias.len())
            .field("to_tag", &self.to_tag.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a frame is not an acceptable SIP message.
///
/// `status` is the response a UAS should send (400, 501, 505); `reply` is `None` when no
/// response can be formed (missing headers, or the frame is a response), in which case the
/// message is dropped silently.
#[derive(Clone, Error)]
#[error("{reason}")]
pub struct ParseError {
    pub status: u16,
    pub reason: &'static str,
    /// Boxed to keep `Result<_, ParseError>` small on the hot path.
    pub reply: Option<Box<ReplyHeaders>>,
}

impl ParseError {
    /// The standard reason phrase for `status`, for the status line of the error response.
    pub fn phrase(&self) -> &'static str {
        match self.status {
            505 => "Version Not Supported",
            501 => "Not Implemented",
            513 => "Message Too Large",
            _ => "Bad Request",
        }
    }
}

impl fmt::Debug for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParseError")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("reply", &self.reply.is_some())
            .finish()
    }
}
