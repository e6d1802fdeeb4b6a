//! Who called, as far as we may know it: the caller's number or "withheld".
//!
//! Privacy requests are honoured before any number is looked at: RFC 3323 §4.2 `Privacy: header`
//! and RFC 3325 §9.3 `Privacy: id` (every Privacy header line and every value in it counts), the
//! anonymous From of RFC 3323 §4.1.1 (`"Anonymous" <sip:anonymous@anonymous.invalid>`), and the
//! `privacy=full` / `privacy=uri` of the Remote-Party-ID that older carriers still send
//! (draft-ietf-sip-privacy-04 §6). Then the identities in order of trust: P-Asserted-Identity
//! (RFC 3325 §9.1, asserted by the trunk), P-Preferred-Identity (§9.2, the caller's side asks
//! for it), Remote-Party-ID with `party=calling`, and last From, which is whatever the caller's
//! side wrote.

use std::fmt;

use super::number::{E164, Normalizer};

/// The caller as the domain sees it. Display names never get here: the SIP layer drops them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerIdentity {
    /// The caller asked for privacy, is anonymous, or sent nothing usable as a number.
    Withheld,
    Number(E164),
}

/// The header fragments the SIP layer extracts for identification.
///
/// `Debug` says only which fields are present, because the values are raw header text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallerInput {
    /// User part of the first P-Asserted-Identity URI.
    pub p_asserted_user: Option<String>,
    /// User part of the first P-Preferred-Identity URI.
    pub p_preferred_user: Option<String>,
    /// User part of the calling party's Remote-Party-ID URI.
    pub remote_party_user: Option<String>,
    /// The calling party's Remote-Party-ID asks for privacy (`privacy=full` or `uri`).
    pub remote_party_private: bool,
    /// User part of the From URI.
    pub from_user: Option<String>,
    /// Every Privacy header value, one entry per line or comma-separated item.
    pub privacy: Vec<String>,
    /// Host part of the From URI.
    pub from_host: Option<String>,
}

impl fmt::Debug for CallerInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "…");
        f.debug_struct("CallerInput")
            .field("p_asserted_user", &shown(&self.p_asserted_user))
            .field("p_preferred_user", &shown(&self.p_preferred_user))
            .field("remote_party_user", &shown(&self.remote_party_user))
            .field("remote_party_private", &self.remote_party_private)
            .field("from_user", &shown(&self.from_user))
            .field("privacy", &self.privacy.len())
            .field("from_host", &shown(&self.from_host))
            .finish()
    }
}

/// Decides the caller identity. Never fails: anything unusable is [`CallerIdentity::Withheld`].
pub fn identify(input: &CallerInput, normalizer: &Normalizer) -> CallerIdentity {
    if input.privacy.iter().any(|p| asks_for_privacy(p)) || input.remote_party_private {
        return CallerIdentity::Withheld;
    }
    let anonymous_host = input
        .from_host
        .as_deref()
        .is_some_and(|h| h.trim().eq_ignore_ascii_case("anonymous.invalid"));
    let users = [
        input.p_asserted_user.as_deref(),
        input.p_preferred_user.as_deref(),
        input.remote_party_user.as_deref(),
        input.from_user.as_deref(),
    ];
    if anonymous_host || users.into_iter().flatten().any(is_anonymous) {
        return CallerIdentity::Withheld;
    }
    // A PAI whose user part is not a number (a trunk's own SIP URI, say) says nothing about the
    // caller, so the next identity still gets its turn.
    users
        .into_iter()
        .flatten()
        .filter(|u| u.bytes().any(|b| b.is_ascii_digit()))
        .find_map(|u| normalizer.normalize(u).ok())
        .map_or(CallerIdentity::Withheld, CallerIdentity::Number)
}

/// RFC 3323 §4.2: `priv-value *(";" priv-value)`, tokens case-insensitive. `id` (RFC 3325) and
/// `header` both ask that the caller's identity not be passed on.
fn asks_for_privacy(header: &str) -> bool {
    header
        .split([';', ','])
        .map(str::trim)
        .any(|t| t.eq_ignore_ascii_case("id") || t.eq_ignore_ascii_case("header"))
}

/// Remote-Party-ID `privacy` values that hide the number (`name` hides only the display name,
/// which we never take anyway).
pub fn remote_party_hides_number(privacy: &str) -> bool {
    let p = privacy.trim().trim_matches('"');
    p.eq_ignore_ascii_case("full") || p.eq_ignore_ascii_case("uri")
}

fn is_anonymous(user: &str) -> bool {
    let user = user.trim();
    user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("restricted")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn input(pai: Option<&str>, from: Option<&str>, privacy: Option<&str>) -> CallerInput {
        CallerInput {
            p_asserted_user: pai.map(str::to_owned),
            from_user: from.map(str::to_owned),
            privacy: privacy.map(str::to_owned).into_iter().collect(),
            from_host: Some("carrier.example".to_owned()),
            ..CallerInput::default()
        }
    }

    fn who(i: &CallerInput) -> Option<String> {
        match identify(i, &Normalizer::new("DE").unwrap()) {
            CallerIdentity::Withheld => None,
            CallerIdentity::Number(n) => Some(n.as_str().to_owned()),
        }
    }

    #[test]
    fn privacy_id_or_header_withholds_in_any_case_and_position() {
        for p in [
            "id",
            "ID",
            "header",
            "Header",
            "user;id",
            "none ; id",
            "session;HEADER",
            "user,id",
        ] {
            assert_eq!(who(&input(Some("+4930123456"), None, Some(p))), None, "{p}");
        }
    }

    #[test]
    fn privacy_without_id_or_header_keeps_the_number() {
        for p in ["none", "user", "session", "", "identity", "critical"] {
            assert_eq!(
                who(&input(Some("+4930123456"), None, Some(p))).as_deref(),
                Some("+4930123456"),
                "{p}"
            );
        }
    }

    #[test]
    fn anonymous_user_or_host_withholds() {
        assert_eq!(who(&input(None, Some("Anonymous"), None)), None);
        assert_eq!(
            who(&input(Some("anonymous"), Some("030123456"), None)),
            None
        );
        let mut i = input(Some("+4930123456"), Some("+4930123456"), None);
        i.from_host = Some("Anonymous.Invalid".to_owned());
        assert_eq!(who(&i), None);
    }

    #[test]
    fn p_asserted_identity_is_preferred_over_from() {
        let i = input(Some("+4930123456"), Some("+4940123456"), None);
        assert_eq!(who(&i).as_deref(), Some("+4930123456"));
    }

    #[test]
    fn from_is_used_when_pai_is_absent_or_not_a_number() {
        assert_eq!(
            who(&input(None, Some("030123456"), None)).as_deref(),
            Some("+4930123456")
        );
        let i = input(Some("trunk-gw"), Some("+4940123456"), None);
        assert_eq!(who(&i).as_deref(), Some("+4940123456"));
    }

    #[test]
    fn no_digits_or_unparseable_withholds() {
        assert_eq!(who(&input(None, None, None)), None);
        assert_eq!(who(&input(Some("alice"), Some("bob"), None)), None);
        assert_eq!(who(&input(None, Some("+999"), None)), None);
        assert_eq!(who(&input(None, Some("12ab34"), None)), None);
    }

    #[test]
    fn every_privacy_line_counts() {
        let mut i = input(Some("+4930123456"), None, Some("user"));
        i.privacy.push("id".to_owned());
        assert_eq!(who(&i), None, "Privacy: user then Privacy: id");
        let mut i = input(Some("+4930123456"), None, Some("none"));
        i.privacy.push("user".to_owned());
        assert_eq!(who(&i).as_deref(), Some("+4930123456"));
    }

    #[test]
    fn preferred_identity_and_remote_party_id_are_identities_too() {
        let mut i = input(None, Some("anonymous"), None);
        i.p_preferred_user = Some("+4930123456".into());
        assert_eq!(who(&i), None, "an anonymous From still withholds");
        let mut i = input(None, Some("trunk"), None);
        i.p_preferred_user = Some("+4930123456".into());
        assert_eq!(who(&i).as_deref(), Some("+4930123456"));
        let mut i = input(None, Some("trunk"), None);
        i.remote_party_user = Some("+4940123456".into());
        assert_eq!(who(&i).as_deref(), Some("+4940123456"));
        i.remote_party_private = true;
        assert_eq!(who(&i), None, "Remote-Party-ID;privacy=full");
    }

    #[test]
    fn remote_party_privacy_values() {
        for p in ["full", "FULL", "uri", "\"full\""] {
            assert!(remote_party_hides_number(p), "{p}");
        }
        for p in ["off", "name", ""] {
            assert!(!remote_party_hides_number(p), "{p}");
        }
    }

    #[test]
    fn debug_does_not_show_header_values() {
        let shown = format!("{:?}", input(Some("+4930123456"), None, Some("id")));
        assert!(!shown.contains("30123456"), "{shown}");
        assert!(!shown.contains("\"id\""), "{shown}");
        assert!(shown.contains("p_asserted_user: Some"), "{shown}");
    }
}
