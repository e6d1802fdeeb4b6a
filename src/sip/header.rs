//! Header section of a SIP message (RFC 3261 §7.3): line unfolding (§7.3.1), case-insensitive
//! names, compact forms (§7.3.3 and the extensions' registry), and comma-separated lists that
//! respect quoted strings and `<...>`.

use std::fmt;

use super::error::SyntaxError;
use super::params::is_token;

/// Compact form → canonical long name (RFC 3261 §7.3.3, RFC 3265, 3515, 3892, 4028, 3841,
/// 4474).
const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("u", "Allow-Events"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("x", "Session-Expires"),
    ("a", "Accept-Contact"),
    ("j", "Reject-Contact"),
    ("d", "Request-Disposition"),
    ("y", "Identity"),
    ("n", "Identity-Info"),
];

/// Long names whose canonical spelling is not plain Title-Case, plus the common ones, so that
/// stored names are predictable for the response builder.
const KNOWN: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Diversion",
    "Event",
    "Expires",
    "From",
    "History-Info",
    "Identity",
    "Identity-Info",
    "Max-Forwards",
    "Min-Expires",
    "Organization",
    "P-Asserted-Identity",
    "P-Charging-Vector",
    "P-Preferred-Identity",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Remote-Party-ID",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// Headers whose values are comma-separated lists (§7.3.1); others (Call-ID, Date,
/// WWW-Authenticate, ...) may contain commas that are not separators.
const LISTS: &[&str] = &[
    "Via",
    "Require",
    "Supported",
    "Allow",
    "Proxy-Require",
    "Unsupported",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Contact",
    "Route",
    "Record-Route",
    "Allow-Events",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Privacy",
    "Remote-Party-ID",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
];

/// The canonical spelling of a header name: compact forms expanded, known names in their
/// registered spelling, unknown names kept as received.
pub fn canonical(name: &str) -> String {
    if let Some((_, long)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) {
        return (*long).to_owned();
    }
    if let Some(k) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return (*k).to_owned();
    }
    name.to_owned()
}

fn is_list(name: &str) -> bool {
    LISTS.iter().any(|l| l.eq_ignore_ascii_case(name))
}

/// One header field: canonical name and the unfolded, trimmed value.
///
/// `Debug` shows the name and the value's length: values are caller text (numbers, names,
/// addresses, Call-IDs, user agents).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("name", &self.name)
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// The header fields in order of appearance.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Headers").field(&self.0).finish()
    }
}

impl Headers {
    /// Parses the header lines (everything after the start line up to the empty line).
    /// Lines may end in CRLF or bare LF; a line starting with SP/HTAB continues the previous
    /// one and the fold becomes a single SP.
    pub fn parse(block: &[u8]) -> Result<Self, SyntaxError> {
        let mut out: Vec<Header> = Vec::new();
        for raw in lines(block) {
            if raw.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(raw);
            if raw[0] == b' ' || raw[0] == b'\t' {
                let Some(last) = out.last_mut() else {
                    return Err(SyntaxError::HeaderLine);
                };
                let cont = text.trim_matches([' ', '\t']);
                if !cont.is_empty() {
                    if !last.value.is_empty() {
                        last.value.push(' ');
                    }
                    last.value.push_str(cont);
                }
                continue;
            }
            let Some((name, value)) = text.split_once(':') else {
                return Err(SyntaxError::HeaderLine);
            };
            // §7.3.1 allows whitespace between the name and the colon.
            let name = name.trim_end_matches([' ', '\t']);
            if !is_token(name) {
                return Err(SyntaxError::HeaderName);
            }
            out.push(Header {
                name: canonical(name),
                value: value.trim_matches([' ', '\t']).to_owned(),
            });
        }
        Ok(Self(out))
    }

    /// First value of `name` (any spelling or compact form).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = canonical(name);
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(&name))
            .map(|h| h.value.as_str())
    }

    /// Every header line's value for `name`, unsplit.
    pub fn lines_of<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical(name);
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(&name))
            .map(|h| h.value.as_str())
    }

    /// How many header lines carry `name`.
    pub fn count(&self, name: &str) -> usize {
        self.lines_of(name).count()
    }

    /// All values of `name`; for list headers each line is split at commas outside quoted
    /// strings and `<...>`, and empty elements are skipped. An unterminated quote keeps the
    /// rest of the line as one element so the element parser can reject it.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        let list = is_list(&canonical(name));
        let mut out = Vec::new();
        for v in self.lines_of(name) {
            if list {
                out.extend(split_list(v));
            } else {
                out.push(v);
            }
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}

/// Splits a list value at commas outside quoted strings and angle brackets.
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quote, mut escaped, mut angle) = (0, false, false, false);
    for (i, c) in v.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '<' => angle = true,
            '>' => angle = false,
            ',' if !angle => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out.into_iter()
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Lines of a block, terminated by CRLF or bare LF, terminators removed.
pub(crate) fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let block = block
        .strip_suffix(b"\n")
        .map_or(block, |b| b.strip_suffix(b"\r").unwrap_or(b));
    block
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_expand_to_long_names() {
        let h = Headers::parse(b"v: a\r\nf: b\r\nt: c\r\ni: d\r\nm: e\r\nl: 0\r\nk: f\r\ny: g\r\n")
            .unwrap();
        let names: Vec<&str> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Via",
                "From",
                "To",
                "Call-ID",
                "Contact",
                "Content-Length",
                "Supported",
                "Identity"
            ]
        );
        assert_eq!(h.get("call-id"), Some("d"));
        assert_eq!(h.get("i"), Some("d"));
    }

    #[test]
    fn folded_lines_unfold_to_single_space() {
        let h = Headers::parse(b"Subject: a\r\n   b\r\n\tc\r\nTO :\r\n sip:x@y\r\n").unwrap();
        assert_eq!(h.get("subject"), Some("a b c"));
        assert_eq!(h.get("To"), Some("sip:x@y"));
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let h = Headers::parse(b"Via: x\nCSeq: 1 INVITE\n").unwrap();
        assert_eq!(h.get("cseq"), Some("1 INVITE"));
    }

    #[test]
    fn continuation_before_first_header_is_rejected() {
        assert_eq!(Headers::parse(b" x\r\n"), Err(SyntaxError::HeaderLine));
        assert_eq!(Headers::parse(b"novalue\r\n"), Err(SyntaxError::HeaderLine));
        assert_eq!(
            Headers::parse(b"bad name: x\r\n"),
            Err(SyntaxError::HeaderName)
        );
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        let h = Headers::parse(
            b"Contact: \"Doe, John\" <sip:a@b;x=1,2>;q=1, <sip:c@d>\r\nContact: *\r\nCall-ID: a,b\r\n",
        )
        .unwrap();
        assert_eq!(
            h.get_all("m"),
            ["\"Doe, John\" <sip:a@b;x=1,2>;q=1", "<sip:c@d>", "*"]
        );
        assert_eq!(h.get_all("Call-ID"), ["a,b"]);
    }

    #[test]
    fn list_split_skips_empty_elements() {
        assert_eq!(split_list(" a ,, b,"), ["a", "b"]);
    }
}
