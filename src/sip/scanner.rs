//! Known SIP scanners by their User-Agent (SIPVicious' "friendly-scanner", sipcli, …), found in
//! the framed bytes before the parser runs: a scanner's message is dropped unanswered, so it
//! learns nothing and costs us one pass over its header section. Matching is ASCII
//! case-insensitive on substrings of the header value (RFC 3261 §20.41 gives User-Agent no
//! compact form), one Aho-Corasick automaton for the whole list.

use aho_corasick::AhoCorasick;

/// The configured scanner names, compiled.
#[derive(Debug, Clone)]
pub struct Scanners {
    /// `None` when the list is empty (the check is off).
    names: Option<AhoCorasick>,
}

impl Scanners {
    /// Compiles `names` (the config refuses empty ones). A list the automaton cannot be built
    /// from (far beyond any real list's size) turns the check off rather than failing the start.
    pub fn new(names: &[String]) -> Self {
        let names = if names.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(names)
                .ok()
        };
        Self { names }
    }

    /// Whether a User-Agent header in `frame`'s header section names a scanner.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let Some(names) = &self.names else {
            return false;
        };
        let end = find(frame, b"\r\n\r\n").unwrap_or(frame.len());
        let mut lines = frame[..end].split(|&b| b == b'\n').peekable();
        // The start line is no header.
        lines.next();
        while let Some(line) = lines.next() {
            let Some(value) = user_agent_value(line) else {
                continue;
            };
            if names.is_match(value) {
                return true;
            }
            // A folded value continues on lines that start with white space (§7.3.1).
            while let Some(next) =
                lines.next_if(|l| l.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
            {
                if names.is_match(next) {
                    return true;
                }
            }
        }
        false
    }
}

/// The value of a `User-Agent:` line (any case, white space before the colon allowed).
fn user_agent_value(line: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"user-agent";
    let name = line.get(..NAME.len())?;
    if !name.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let rest = &line[NAME.len()..];
    let colon = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
    (rest[colon] == b':').then(|| &rest[colon + 1..])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanners() -> Scanners {
        let settings = crate::sip::limit::Settings::default();
        Scanners::new(&settings.scanner_user_agents)
    }

    fn options(user_agent_line: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\n\
             {user_agent_line}\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn default_list_finds_scanners_in_any_case_and_inside_the_value() {
        let s = scanners();
        for line in [
            "User-Agent: friendly-scanner",
            "user-agent:FRIENDLY-SCANNER",
            "USER-AGENT : sipvicious 0.3.4",
            "User-Agent: SIPcli/v1.8",
            "User-Agent: VaxSIPUserAgent/3.1",
            "User-Agent: pplsip",
            "User-Agent: iWar",
            "User-Agent: Some UA\r\n  (sundayddr build)",
        ] {
            assert!(s.matches(&options(line)), "{line}");
        }
    }

    #[test]
    fn real_user_agents_and_other_headers_are_not_scanners() {
        let s = scanners();
        for line in [
            "User-Agent: Asterisk PBX 20.5.0",
            "User-Agent: Kamailio (5.7.2 (x86_64/linux))",
            "Server: friendly-scanner",
            "Subject: sipvicious",
            "X-User-Agent-Note: friendly-scanner",
        ] {
            assert!(!s.matches(&options(line)), "{line}");
        }
    }

    #[test]
    fn the_body_and_start_line_are_not_searched() {
        let s = scanners();
        let mut msg = options("User-Agent: Asterisk");
        msg.extend_from_slice(b"User-Agent: friendly-scanner\r\n");
        assert!(!s.matches(&msg));
        assert!(!s.matches(b"OPTIONS sip:friendly-scanner@x SIP/2.0\r\n\r\n"));
    }

    #[test]
    fn an_empty_list_matches_nothing() {
        assert!(!Scanners::new(&[]).matches(&options("User-Agent: friendly-scanner")));
    }
}
