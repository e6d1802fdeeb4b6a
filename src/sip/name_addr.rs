//! From, To, Contact, P-Asserted-Identity values (RFC 3261 §20.10, §20.20, §20.39, §25.1
//! name-addr / addr-spec; RFC 3325 §9.1). Without `< >` every `;param` is a header parameter
//! (RFC 3261 §20.10, RFC 4475 §3.3.12).

use std::fmt;

use super::error::SyntaxError;
use super::params::{Params, is_token, parse_header_params};
use super::uri::Uri;

/// `Debug` says whether there is a display name, never the name itself.
#[derive(Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name with quotes removed and quoted-pairs resolved.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (tag, q, expires, ...).
    pub params: Params,
}

impl fmt::Debug for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameAddr")
            .field("display", &self.display.is_some())
            .field("uri", &self.uri)
            .field("params", &self.params)
            .finish()
    }
}

impl NameAddr {
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let s = s.trim_matches([' ', '\t']);
        if s.is_empty() {
            return Err(SyntaxError::Empty);
        }
        if let Some(rest) = s.strip_prefix('"') {
            let (display, after) = quoted(rest)?;
            let after = after.trim_start_matches([' ', '\t']);
            if !after.starts_with('<') {
                return Err(SyntaxError::Display);
            }
            return bracketed(Some(display), after);
        }
        if let Some(lt) = s.find('<') {
            let name = s[..lt].trim_matches([' ', '\t']);
            // A token display name may be followed by '<' without LWS (RFC 4475 §3.1.1.6).
            let display = if name.is_empty() {
                None
            } else if name
                .split([' ', '\t'])
                .filter(|w| !w.is_empty())
                .all(is_token)
            {
                Some(name.split_whitespace().collect::<Vec<_>>().join(" "))
            } else {
                return Err(SyntaxError::Display);
            };
            return bracketed(display, &s[lt..]);
        }
        // addr-spec: the URI ends at the first ';' and may not hold '?' or ',' (§20).
        let (uri, params) = match s.find(';') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let uri = uri.trim_end_matches([' ', '\t']);
        if uri.contains(['?', ',', '>']) {
            return Err(SyntaxError::Brackets);
        }
        Ok(Self {
            display: None,
            uri: Uri::parse(uri)?,
            params: parse_header_params(params)?,
        })
    }
}

/// `s` starts at '<'. No whitespace is allowed inside the brackets (RFC 4475 §3.1.2.14).
fn bracketed(display: Option<String>, s: &str) -> Result<NameAddr, SyntaxError> {
    let inner = s.strip_prefix('<').ok_or(SyntaxError::Brackets)?;
    let (uri, after) = inner.split_once('>').ok_or(SyntaxError::Brackets)?;
    Ok(NameAddr {
        display,
        uri: Uri::parse(uri)?,
        params: parse_header_params(after)?,
    })
}

/// Reads a quoted-string body after the opening quote; returns the unescaped text and the
/// remainder after the closing quote.
fn quoted(s: &str) -> Result<(String, &str), SyntaxError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                // quoted-pair excludes CR and LF (§25.1)
                Some((_, e)) if e != '\r' && e != '\n' => out.push(e),
                _ => return Err(SyntaxError::Quote),
            },
            '"' => return Ok((out, &s[i + 1..])),
            _ => out.push(c),
        }
    }
    Err(SyntaxError::Quote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::Host;

    #[test]
    fn quoted_display_name_with_escapes() {
        let n = NameAddr::parse(r#""J Rosenberg \\\""  <sip:jdrosen@example.com> ; tag = 98asjd8"#)
            .unwrap();
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
    }

    #[test]
    fn token_display_name_without_space_before_bracket() {
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
    }

    #[test]
    fn unterminated_quote_is_rejected() {
        assert_eq!(
            NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>"),
            Err(SyntaxError::Quote)
        );
    }

    #[test]
    fn comma_in_unquoted_display_name_is_rejected() {
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>"),
            Err(SyntaxError::Display)
        );
    }

    #[test]
    fn spaces_inside_brackets_are_rejected() {
        assert!(NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
    }

    #[test]
    fn addr_spec_params_are_header_params() {
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(n.params.contains("unknownparam"));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        let n = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(n.params.is_empty());
        assert!(n.uri.as_sip().unwrap().params.contains("unknownparam"));
    }

    #[test]
    fn addr_spec_with_uri_headers_needs_brackets() {
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E").is_err());
        assert!(NameAddr::parse("<sip:user@example.com?Route=%3Csip:x%3E>").is_ok());
    }

    #[test]
    fn pai_with_display_name_and_ipv6_host() {
        let n = NameAddr::parse("\"Anna Beispiel\" <sip:+4930555000@[2001:db8::1]>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Anna Beispiel"));
        assert_eq!(
            n.uri.as_sip().unwrap().host,
            Host::Ipv6("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn utf8_quoted_param_value_is_kept() {
        let n = NameAddr::parse("a <sip:x@y>;p=\"ÐÐ°;\";tag=1").unwrap();
        assert_eq!(n.tag(), Some("1"));
    }
}
