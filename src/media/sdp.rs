//! SDP offer parsing (RFC 4566 §5) and answer generation (RFC 3264 §6) for the early-media
//! announcement: we accept one audio stream over RTP/AVP with PCMU or PCMA, plus RFC 4733
//! telephone-event so the caller can object with a key press.
//!
//! The offer comes from the network and carries the caller's IP address, so the parser never
//! panics on any input, and neither errors nor `Debug` output repeat any part of it.

use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

use super::g711::Codec;

/// Larger bodies are not SDP a trunk would send; refusing them bounds the work per INVITE.
const MAX_LEN: usize = 16 * 1024;
/// A sane cap on m= lines: each one costs a line in the answer.
const MAX_STREAMS: usize = 16;
/// The only transport we can answer: no SRTP keys, no AVPF feedback.
const RTP_AVP: &str = "RTP/AVP";
/// We always packetize 20 ms (RFC 3551 §4.5: the default for G.711).
const PTIME_MS: u16 = 20;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP is larger than the accepted maximum")]
    TooLarge,
    #[error("SDP is not UTF-8 text")]
    NotText,
    #[error("SDP does not start with v=0")]
    Version,
    #[error("SDP line {line} is malformed")]
    Malformed { line: usize },
    #[error("SDP has too many media lines")]
    TooManyStreams,
    #[error("SDP offer has no audio stream over RTP/AVP")]
    NoAudio,
    #[error("SDP audio stream is disabled (port 0)")]
    PortZero,
    #[error("SDP has no connection address for the audio stream")]
    NoConnection,
    #[error("SDP connection address is not a usable IPv4 or IPv6 address")]
    BadAddress,
    #[error("SDP offer has no codec in common (PCMU, PCMA)")]
    NoCommonCodec,
}

impl SdpError {
    /// The SIP final response for an INVITE whose offer failed (RFC 3261 §21.4.1, §21.4.26):
    /// 400 when the body is not SDP at all, 488 when it is SDP we cannot accept.
    pub fn sip_status(self) -> u16 {
        match self {
            SdpError::TooLarge
            | SdpError::NotText
            | SdpError::Version
            | SdpError::Malformed { .. } => 400,
            _ => 488,
        }
    }
}

/// Media direction attribute (RFC 4566 §6, RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction for an offered one (RFC 3264 §6.1): the mirror image.
    pub fn answer(self) -> Self {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether we may send to the peer with this (answer) direction.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
}

/// One payload type of the audio m= line, with its rtpmap if the offer had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub pt: u8,
    /// Encoding name as offered (`PCMU`, `telephone-event`, ...); for the static types 0 and 8
    /// filled in from RFC 3551 when the offer has no rtpmap.
    pub encoding: Option<String>,
    pub clock: Option<u32>,
}

/// The parts of an offer that the announcement needs: the first usable audio stream.
#[derive(Clone, PartialEq, Eq)]
pub struct Offer {
    /// Connection address for the audio stream (media-level c= wins over session-level).
    pub addr: IpAddr,
    pub port: u16,
    /// Payload types in the offer's order of preference.
    pub formats: Vec<Format>,
    /// The dynamic payload type mapped to `telephone-event/8000`, if any.
    pub telephone_event: Option<u8>,
    pub direction: Direction,
    pub ptime: Option<u16>,
    /// Every m= line, kept so the answer can mirror them (RFC 3264 §6).
    streams: Vec<Stream>,
    /// Index into `streams` of the audio stream described above.
    audio: usize,
}

impl Offer {
    /// Where to send our RTP.
    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

// Hand-written so that a stray `{:?}` in a log line cannot leak the caller's address.
impl fmt::Debug for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offer")
            .field("addr", &"<redacted>")
            .field("port", &"<redacted>")
            .field("formats", &self.formats)
            .field("telephone_event", &self.telephone_event)
            .field("direction", &self.direction)
            .field("ptime", &self.ptime)
            .field("streams", &self.streams.len())
            .finish()
    }
}

/// One m= line as offered; only the tokens the answer has to echo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stream {
    kind: String,
    port: u16,
    proto: String,
    fmts: Vec<String>,
    /// A bad address only matters if this is the stream we answer, so it is kept, not raised.
    conn: Option<Result<IpAddr, SdpError>>,
    direction: Option<Direction>,
    ptime: Option<u16>,
    rtpmaps: Vec<(u8, String, u32)>,
}

/// Our side of the media session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub port: u16,
    /// The o= session id; also used as the session version, since we send one answer per call.
    pub session_id: u64,
}

/// The negotiated session and the SDP text to put in the 183.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    pub codec: Codec,
    /// The caller's telephone-event payload type, echoed in our answer.
    pub te_pt: Option<u8>,
    /// Where to send our RTP.
    pub remote: SocketAddr,
    /// Our direction; see [`Direction::sends`] before playing.
    pub direction: Direction,
    pub sdp: String,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("codec", &self.codec)
            .field("te_pt", &self.te_pt)
            .field("remote", &"<redacted>")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// Parses an SDP offer and picks its first audio stream over RTP/AVP with a non-zero port.
pub fn parse(body: &[u8]) -> Result<Offer, SdpError> {
    if body.len() > MAX_LEN {
        return Err(SdpError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    let mut session_conn: Option<Result<IpAddr, SdpError>> = None;
    let mut session_dir: Option<Direction> = None;
    let mut streams: Vec<Stream> = Vec::new();
    let mut saw_version = false;

    // RFC 4566 §5 says CRLF, but also that parsers should accept a bare LF.
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if !saw_version {
            // Anything but v=0 first is not SDP (RFC 4566 §5.1), whatever else it contains.
            if line != "v=0" {
                return Err(SdpError::Version);
            }
            saw_version = true;
            continue;
        }
        let bad = SdpError::Malformed { line: n };
        let (kind, value) = split_line(line).ok_or(bad)?;
        match kind {
            'm' => {
                if streams.len() == MAX_STREAMS {
                    return Err(SdpError::TooManyStreams);
                }
                streams.push(parse_media(value).ok_or(bad)?);
            }
            'c' => {
                if !is_connection(value) {
                    return Err(bad);
                }
                let addr = Some(parse_address(value));
                match streams.last_mut() {
                    Some(s) => s.conn = addr,
                    None => session_conn = addr,
                }
            }
            'a' => {
                let slot = streams.last_mut();
                if let Some(dir) = Direction::parse(value) {
                    match slot {
                        Some(s) => s.direction = Some(dir),
                        None => session_dir = Some(dir),
                    }
                } else if let Some(s) = slot {
                    parse_media_attr(s, value);
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return Err(SdpError::Version);
    }
    select_audio(streams, session_conn, session_dir)
}

/// Splits `x=value`; the type must be one lowercase letter (RFC 4566 §5).
fn split_line(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    if !kind.is_ascii_lowercase() || chars.next()? != '=' {
        return None;
    }
    // Both the letter and '=' are ASCII, so index 2 is a char boundary.
    Some((kind, line.get(2..)?))
}

/// RFC 4566 token characters; anything else in an m= line would end up in our answer.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~/".contains(&b))
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...` (RFC 4566 §5.14).
fn parse_media(value: &str) -> Option<Stream> {
    let mut it = value.split(' ').filter(|t| !t.is_empty());
    let kind = it.next()?;
    let port_tok = it.next()?;
    let proto = it.next()?;
    let fmts: Vec<String> = it.map(str::to_owned).collect();
    let port_str = port_tok.split_once('/').map_or(port_tok, |(p, _)| p);
    let port: u16 = port_str.parse().ok()?;
    if !is_token(kind) || !is_token(proto) || fmts.is_empty() || !fmts.iter().all(|f| is_token(f)) {
        return None;
    }
    Some(Stream {
        kind: kind.to_owned(),
        port,
        proto: proto.to_owned(),
        fmts,
        conn: None,
        direction: None,
        ptime: None,
        rtpmaps: Vec::new(),
    })
}

/// `c=<nettype> <addrtype> <addr>`: three tokens, network type IN (RFC 4566 §5.7).
fn is_connection(value: &str) -> bool {
    let mut it = value.split(' ').filter(|t| !t.is_empty());
    matches!(
        (it.next(), it.next(), it.next(), it.next()),
        (Some("IN"), Some(_), Some(_), None)
    )
}

/// The address of a well-formed c= value: `IN IP4 <addr>[/ttl[/n]]` or `IN IP6 <addr>`.
/// Host names are not accepted: resolving a caller-supplied name would be a lookup on the
/// caller's behalf.
fn parse_address(value: &str) -> Result<IpAddr, SdpError> {
    let mut it = value.split(' ').filter(|t| !t.is_empty()).skip(1);
    let (Some(kind), Some(addr)) = (it.next(), it.next()) else {
        return Err(SdpError::BadAddress);
    };
    let addr = addr.split_once('/').map_or(addr, |(a, _)| a);
    let ip: IpAddr = addr.parse().map_err(|_| SdpError::BadAddress)?;
    let family_ok = match kind {
        "IP4" => ip.is_ipv4(),
        "IP6" => ip.is_ipv6(),
        _ => false,
    };
    // 0.0.0.0 is the RFC 2543 hold convention (RFC 3264 §8.4); there is nowhere to send to,
    // and multicast makes no sense for a one-to-one announcement.
    if !family_ok || ip.is_unspecified() || ip.is_multicast() {
        return Err(SdpError::BadAddress);
    }
    Ok(ip)
}

/// Media-level attributes we care about; everything else is ignored, as RFC 4566 §5.13
/// requires for unknown attributes. A malformed value is ignored too rather than failing the
/// call: losing the disclosure over a bad `a=ptime` would be worse than guessing.
fn parse_media_attr(s: &mut Stream, value: &str) {
    if let Some(v) = value.strip_prefix("ptime:") {
        s.ptime = v.trim().parse().ok();
    } else if let Some(v) = value.strip_prefix("rtpmap:")
        && let Some(map) = parse_rtpmap(v)
    {
        s.rtpmaps.push(map);
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]` (RFC 4566 §6).
fn parse_rtpmap(v: &str) -> Option<(u8, String, u32)> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let pt: u8 = pt.parse().ok()?;
    if pt > 127 {
        return None;
    }
    let mut parts = rest.trim().split('/');
    let enc = parts.next()?;
    let clock: u32 = parts.next()?.parse().ok()?;
    if !is_token(enc) {
        return None;
    }
    Some((pt, enc.to_owned(), clock))
}

fn select_audio(
    streams: Vec<Stream>,
    session_conn: Option<Result<IpAddr, SdpError>>,
    session_dir: Option<Direction>,
) -> Result<Offer, SdpError> {
    let is_audio = |s: &Stream| s.kind == "audio" && s.proto == RTP_AVP;
    let Some(audio) = streams.iter().position(|s| is_audio(s) && s.port != 0) else {
        return Err(if streams.iter().any(is_audio) {
            SdpError::PortZero
        } else {
            SdpError::NoAudio
        });
    };
    let s = &streams[audio];
    let addr = s.conn.or(session_conn).ok_or(SdpError::NoConnection)??;
    let mut formats = Vec::with_capacity(s.fmts.len());
    for f in &s.fmts {
        // RTP/AVP formats are payload type numbers (RFC 4566 §5.14); anything else cannot be
        // a codec we speak, so it is skipped rather than failing the whole offer.
        let Some(pt) = f.parse::<u8>().ok().filter(|pt| *pt <= 127) else {
            continue;
        };
        let map = s.rtpmaps.iter().find(|(p, _, _)| *p == pt);
        let (encoding, clock) = match (map, pt) {
            (Some((_, e, c)), _) => (Some(e.clone()), Some(*c)),
            (None, 0) => (Some("PCMU".to_owned()), Some(8000)),
            (None, 8) => (Some("PCMA".to_owned()), Some(8000)),
            (None, _) => (None, None),
        };
        formats.push(Format {
            pt,
            encoding,
            clock,
        });
    }
    let telephone_event = formats
        .iter()
        .find(|f| {
            (96..=127).contains(&f.pt)
                && f.clock == Some(8000)
                && f.encoding
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case("telephone-event"))
        })
        .map(|f| f.pt);
    Ok(Offer {
        addr,
        port: s.port,
        formats,
        telephone_event,
        direction: s.direction.or(session_dir).unwrap_or_default(),
        ptime: s.ptime,
        streams,
        audio,
    })
}

/// Answers a parsed offer (RFC 3264 §6): the first of PCMU/PCMA the offer lists, its
/// telephone-event type if offered, and every other m= line rejected with port 0.
pub fn answer(offer: &Offer, local: LocalMedia) -> Result<Answer, SdpError> {
    // Static types only: the player sends `Codec::pt`, and no trunk maps G.711 dynamically.
    let codec = offer
        .formats
        .iter()
        .find_map(|f| match f.pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let te_pt = offer.telephone_event;
    let direction = offer.direction.answer();
    let ip = match local.addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let id = local.session_id;
    let mut sdp = String::with_capacity(256);
    // Writing to a String cannot fail; the results are discarded for that reason.
    let _ = write!(
        sdp,
        "v=0\r\no=- {id} {id} IN {ip} {addr}\r\ns=-\r\nc=IN {ip} {addr}\r\nt=0 0\r\n",
        addr = local.addr
    );
    for (i, s) in offer.streams.iter().enumerate() {
        if i != offer.audio {
            // RFC 3264 §6: a rejected stream keeps its media, proto and formats, port 0.
            let _ = write!(sdp, "m={} 0 {} {}\r\n", s.kind, s.proto, s.fmts.join(" "));
            continue;
        }
        let _ = write!(sdp, "m=audio {} {RTP_AVP} {}", local.port, codec.pt());
        if let Some(te) = te_pt {
            let _ = write!(sdp, " {te}");
        }
        let _ = write!(sdp, "\r\na=rtpmap:{} {}/8000\r\n", codec.pt(), codec.name());
        if let Some(te) = te_pt {
            // 0-15 are the DTMF events (RFC 4733 §3.2); we ignore everything else anyway.
            let _ = write!(
                sdp,
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
            );
        }
        let _ = write!(sdp, "a=ptime:{PTIME_MS}\r\na={}\r\n", direction.as_str());
    }
    Ok(Answer {
        codec,
        te_pt,
        remote: offer.remote(),
        direction,
        sdp,
    })
}

/// Parses an offer and answers it in one step.
pub fn negotiate(offer: &[u8], local: LocalMedia) -> Result<Answer, SdpError> {
    answer(&parse(offer)?, local)
}

#[cfg(test)]
mod tests;
