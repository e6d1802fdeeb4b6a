//! URIs as they appear in a Request-URI or a name-addr: SIP/SIPS (RFC 3261 §19.1, §25.1 with the
//! IPv6 reference rules of RFC 5118 §4), tel (RFC 3966 §3) and any other scheme kept opaque
//! (the UAS answers those with 416, RFC 3261 §8.2.2.1).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::SyntaxError;
use super::params::{Params, escapes_ok, parse_uri_params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// A syntactically plausible URI of a scheme we do not interpret.
    Other {
        scheme: String,
    },
}

/// `Debug` names the kind of host only: a host is the caller's or a carrier's address.
#[derive(Clone, PartialEq, Eq)]
pub enum Host {
    Domain(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Domain(_) => "Domain(…)",
            Self::Ipv4(_) => "Ipv4(…)",
            Self::Ipv6(_) => "Ipv6(…)",
        })
    }
}

/// `Debug` shows which parts are present, never their text: the user part is usually the
/// caller's number.
#[derive(Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part exactly as received (escapes kept; may contain `;`, RFC 4475 §3.1.1.9).
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// `?name=value&...` headers, raw (escapes kept, never turned into real headers).
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipUri")
            .field("secure", &self.secure)
            .field("user_len", &self.user.as_ref().map(String::len))
            .field("password", &self.password.is_some())
            .field("host", &self.host)
            .field("port", &self.port.is_some())
            .field("params", &self.params)
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl SipUri {
    /// The user part with `%HH` decoded once (RFC 4475 §3.1.1.3: no recursive unescaping).
    /// Bytes, because `%00` and non-UTF-8 octets are legal and must not truncate.
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(unescape)
    }

    /// `;user=phone` (RFC 3261 §19.1.1): the user part is a telephone-subscriber.
    pub fn is_phone(&self) -> bool {
        self.params
            .value("user")
            .is_some_and(|v| v.eq_ignore_ascii_case("phone"))
    }
}

/// `Debug` shows the number's length and whether it is global, never the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct TelUri {
    /// As received, visual separators included (`+49-30-1234`).
    pub number: String,
    pub params: Params,
}

impl fmt::Debug for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelUri")
            .field("number_len", &self.number.len())
            .field("global", &self.is_global())
            .field("params", &self.params)
            .finish()
    }
}

impl TelUri {
    /// Global numbers start with `+` (RFC 3966 §5.1.4).
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }

    /// The number without visual separators (`-`, `.`, `(`, `)`), `+` kept.
    pub fn digits(&self) -> String {
        self.number
            .chars()
            .filter(|c| !"-.()".contains(*c))
            .collect()
    }

    pub fn phone_context(&self) -> Option<&str> {
        self.params.value("phone-context")
    }
}

/// Decodes `%HH` once; invalid escapes are kept literally (callers validated them already).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            // Two hex digits are < 256 by construction.
            out.push(u8::try_from(h * 16 + l).unwrap_or(0));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl Uri {
    /// Parses one URI with no surrounding whitespace or brackets.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        if s.is_empty() {
            return Err(SyntaxError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') {
            return Err(SyntaxError::Whitespace);
        }
        let (scheme, rest) = s.split_once(':').ok_or(SyntaxError::Scheme)?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok || rest.is_empty() {
            return Err(SyntaxError::Scheme);
        }
        if scheme.eq_ignore_ascii_case("sip") {
            parse_sip(rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            parse_sip(rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            parse_tel(rest).map(Uri::Tel)
        } else {
            Ok(Uri::Other {
                scheme: scheme.to_ascii_lowercase(),
            })
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c)
}

fn parse_sip(rest: &str, secure: bool) -> Result<SipUri, SyntaxError> {
    // '@' cannot occur in host, params or headers (only escaped), so the first one ends the
    // userinfo even when the user part holds ';' or '?' (RFC 4475 §3.1.1.2, §3.1.1.9).
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pw) = match u.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (u, None),
            };
            let user_ok = !user.is_empty()
                && user
                    .chars()
                    .all(|c| is_unreserved(c) || "%&=+$,;?/".contains(c))
                && escapes_ok(user);
            if !user_ok {
                return Err(SyntaxError::User);
            }
            if let Some(pw) = pw
                && !(pw.chars().all(|c| is_unreserved(c) || "%&=+$,".contains(c)) && escapes_ok(pw))
            {
                return Err(SyntaxError::User);
            }
            (Some(user.to_owned()), pw.map(str::to_owned))
        }
    };
    let (before_headers, headers) = match hostpart.split_once('?') {
        Some((a, h)) => (a, Some(h)),
        None => (hostpart, None),
    };
    let (hostport, params) = match before_headers.split_once(';') {
        Some((a, p)) => (a, parse_uri_params(p)?),
        None => (before_headers, Params::default()),
    };
    let (host, port) = parse_hostport(hostport)?;
    let headers = match headers {
        None => Vec::new(),
        Some(h) => parse_uri_headers(h)?,
    };
    Ok(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

fn parse_uri_headers(s: &str) -> Result<Vec<(String, String)>, SyntaxError> {
    s.split('&')
        .map(|h| {
            let (n, v) = h.split_once('=').ok_or(SyntaxError::UriHeader)?;
            let ok = |t: &str| {
                t.chars()
                    .all(|c| is_unreserved(c) || "%[]/?:+$".contains(c))
                    && escapes_ok(t)
            };
            if n.is_empty() || !ok(n) || !ok(v) {
                return Err(SyntaxError::UriHeader);
            }
            Ok((n.to_owned(), v.to_owned()))
        })
        .collect()
}

/// `host [":" port]` where an IPv6 host must be bracketed (RFC 5118 §4.2, §4.3).
pub fn parse_hostport(s: &str) -> Result<(Host, Option<u16>), SyntaxError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(SyntaxError::Host)?;
        let host = Host::Ipv6(parse_ipv6(addr)?);
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or(SyntaxError::Port)?)?),
        };
        return Ok((host, port));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (s, None),
    };
    Ok((parse_host(host)?, port))
}

/// IPv6 text; tolerates the `2001:db8:::192.0.2.1` form that RFC 3261's ABNF admitted
/// (RFC 5118 §4.10 asks to accept both).
pub fn parse_ipv6(s: &str) -> Result<Ipv6Addr, SyntaxError> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    if s.matches(":::").count() == 1 && !s.contains("::::") {
        return s
            .replacen(":::", "::", 1)
            .parse()
            .map_err(|_| SyntaxError::Host);
    }
    Err(SyntaxError::Host)
}

fn parse_port(p: &str) -> Result<u16, SyntaxError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SyntaxError::Port);
    }
    p.parse().map_err(|_| SyntaxError::Port)
}

/// A host without port: IPv4 dotted quad or a domain name (a trailing dot allowed). Underscores
/// are tolerated in labels because some carrier SBCs use them in internal names.
pub fn parse_host(h: &str) -> Result<Host, SyntaxError> {
    if h.is_empty() {
        return Err(SyntaxError::Host);
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return h.parse().map(Host::Ipv4).map_err(|_| SyntaxError::Host);
    }
    let labels_ok = h.trim_end_matches('.').split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !labels_ok {
        return Err(SyntaxError::Host);
    }
    Ok(Host::Domain(h.to_owned()))
}

fn parse_tel(rest: &str) -> Result<TelUri, SyntaxError> {
    let (number, params) = match rest.split_once(';') {
        Some((n, p)) => (n, parse_uri_params(p)?),
        None => (rest, Params::default()),
    };
    let (digits, global) = match number.strip_prefix('+') {
        Some(d) => (d, true),
        None => (number, false),
    };
    let allowed =
        |c: char| c.is_ascii_digit() || "-.()".contains(c) || (!global && "*#ABCDabcd".contains(c));
    let has_digit = digits
        .chars()
        .any(|c| c.is_ascii_digit() || "*#".contains(c));
    if !has_digit || !digits.chars().all(allowed) {
        return Err(SyntaxError::Number);
    }
    Ok(TelUri {
        number: number.to_owned(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn e164_user_phone_uri_parses() {
        let u = sip("sip:+4930123456@198.51.100.7:5060;user=phone");
        assert_eq!(u.user.as_deref(), Some("+4930123456"));
        assert_eq!(u.host, Host::Ipv4("198.51.100.7".parse().unwrap()));
        assert_eq!(u.port, Some(5060));
        assert!(u.is_phone());
        assert!(!u.secure);
    }

    #[test]
    fn bracketed_ipv6_with_port_splits_port() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
    }

    #[test]
    fn bracketed_ipv6_ending_in_port_like_group_has_no_port() {
        let u = sip("sips:[2001:db8::10:5070]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port, None);
        assert!(u.secure);
    }

    #[test]
    fn unbracketed_ipv6_is_rejected() {
        assert!(Uri::parse("sip:2001:db8::10").is_err());
    }

    #[test]
    fn three_colon_ipv6_is_tolerated() {
        let u = sip("sip:user@[2001:db8:::192.0.2.1]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn escaped_null_does_not_truncate_user() {
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user_unescaped().unwrap(), b"null-\0-null");
        assert_eq!(u.user.as_deref(), Some("null-%00-null"));
    }

    #[test]
    fn unescaping_is_not_recursive() {
        let u = sip("sip:a%2541@example.com");
        assert_eq!(u.user_unescaped().unwrap(), b"a%41");
    }

    #[test]
    fn semicolon_in_user_part_stays_in_user() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
    }

    #[test]
    fn bad_escape_in_user_is_rejected() {
        assert_eq!(Uri::parse("sip:a%4@example.com"), Err(SyntaxError::User));
    }

    #[test]
    fn tel_uri_global_and_local() {
        let Uri::Tel(t) = Uri::parse("tel:+49-30-123456").unwrap() else {
            panic!()
        };
        assert!(t.is_global());
        assert_eq!(t.digits(), "+4930123456");
        let Uri::Tel(t) = Uri::parse("tel:030123456;phone-context=+49").unwrap() else {
            panic!()
        };
        assert!(!t.is_global());
        assert_eq!(t.phone_context(), Some("+49"));
        assert!(Uri::parse("tel:+49abc").is_err());
    }

    #[test]
    fn unknown_scheme_is_opaque() {
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002").unwrap(),
            Uri::Other {
                scheme: "soap.beep".into()
            }
        );
    }

    #[test]
    fn whitespace_or_brackets_in_uri_are_rejected() {
        assert!(Uri::parse("sip:a@b; lr").is_err());
        assert!(Uri::parse("<sip:a@b>").is_err());
    }

    #[test]
    fn uri_headers_are_kept_raw() {
        let u = sip("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
        assert_eq!(
            u.headers,
            [("Route".to_owned(), "%3Csip:sip.example.com%3E".to_owned())]
        );
    }

    #[test]
    fn bad_ports_are_rejected() {
        assert!(Uri::parse("sip:a@b:").is_err());
        assert!(Uri::parse("sip:a@b:70000").is_err());
        assert!(Uri::parse("sip:a@b:5x").is_err());
    }
}
