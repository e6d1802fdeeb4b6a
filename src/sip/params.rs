//! `;name=value` parameter lists: URI parameters (RFC 3261 §19.1.1, no whitespace) and header
//! parameters (§25.1 generic-param, LWS around `;` and `=`, quoted-string values).

use std::fmt;

use super::error::SyntaxError;

/// One parameter as received; the value keeps its quotes if it was a quoted-string.
///
/// `Debug` shows the name and whether there is a value: values are tags, branches and
/// addresses (`received=`, `maddr=`) from the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Param")
            .field("name", &self.name)
            .field("has_value", &self.value.is_some())
            .finish()
    }
}

/// Parameters in order of appearance; names compare case-insensitively (§19.1.4, §7.3.1).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Params").field(&self.0).finish()
    }
}

impl Params {
    /// `Some(None)` for a parameter without value, `Some(Some(v))` with one.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

fn is_lws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `%HH` escapes must be complete wherever 'escaped' is allowed (§25.1).
pub(crate) fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn is_uri_param_char(c: char) -> bool {
    // paramchar = param-unreserved / unreserved / escaped
    c.is_ascii_alphanumeric() || "[]/:&+$-_.!~*'()%".contains(c)
}

/// URI parameters after the first `;` (the leading `;` already removed). No whitespace; an
/// empty parameter (`;;`) is an error.
pub(crate) fn parse_uri_params(s: &str) -> Result<Params, SyntaxError> {
    let mut out = Vec::new();
    for part in s.split(';') {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        let valid = |t: &str| !t.is_empty() && t.chars().all(is_uri_param_char) && escapes_ok(t);
        if !valid(name) || value.is_some_and(|v| !valid(v)) {
            return Err(SyntaxError::Param);
        }
        out.push(Param {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
    }
    Ok(Params(out))
}

/// Splits `s` at `sep` outside quoted strings (with `\` escapes). Errors on an unterminated
/// quote.
pub(crate) fn split_outside_quotes(s: &str, sep: char) -> Result<Vec<&str>, SyntaxError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    if in_quote {
        return Err(SyntaxError::Quote);
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// Header parameters: `s` starts at the first `;` (or is empty/whitespace). LWS is allowed
/// around `;` and `=`; values are tokens, hosts (`[v6]`) or quoted strings.
pub(crate) fn parse_header_params(s: &str) -> Result<Params, SyntaxError> {
    let s = s.trim_matches(is_lws);
    if s.is_empty() {
        return Ok(Params::default());
    }
    let Some(rest) = s.strip_prefix(';') else {
        return Err(SyntaxError::Param);
    };
    let mut out = Vec::new();
    for part in split_outside_quotes(rest, ';')? {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim_matches(is_lws), Some(v.trim_matches(is_lws))),
            None => (part.trim_matches(is_lws), None),
        };
        if !is_token(name) {
            return Err(SyntaxError::Param);
        }
        if let Some(v) = value {
            let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
            let plain = !v.is_empty() && v.chars().all(|c| is_token_char(c) || "[]:".contains(c));
            if !quoted && !plain {
                return Err(SyntaxError::Param);
            }
        }
        out.push(Param {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
    }
    Ok(Params(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_tolerate_lws_around_separators() {
        let p = parse_header_params(" ;   tag    = 1918181833n ; lr").unwrap();
        assert_eq!(p.value("TAG"), Some("1918181833n"));
        assert_eq!(p.get("lr"), Some(None));
    }

    #[test]
    fn header_param_quoted_value_may_hold_semicolons() {
        let p = parse_header_params(";x=\"a;b\\\"c\";tag=1").unwrap();
        assert_eq!(p.value("x"), Some("\"a;b\\\"c\""));
        assert_eq!(p.value("tag"), Some("1"));
    }

    #[test]
    fn empty_header_param_is_rejected() {
        assert_eq!(parse_header_params(";;;"), Err(SyntaxError::Param));
    }

    #[test]
    fn uri_params_reject_whitespace_and_empties() {
        assert!(parse_uri_params("lr; x").is_err());
        assert!(parse_uri_params("lr;;x").is_err());
        assert_eq!(
            parse_uri_params("user=phone;lr").unwrap().value("user"),
            Some("phone")
        );
    }

    #[test]
    fn incomplete_escape_is_detected() {
        assert!(escapes_ok("a%20b"));
        assert!(!escapes_ok("a%2"));
        assert!(!escapes_ok("%zz"));
    }
}
