//! Who called, as far as we may know it: the caller's number or "withheld".
//!
//! Privacy requests are honoured before any number is looked at: RFC 3323 §4.2 `Privacy: header`
//! and RFC 3325 §9.3 `Privacy: id`, and the anonymous From of RFC 3323 §4.1.1
//! (`"Anonymous" <sip:anonymous@anonymous.invalid>`). P-Asserted-Identity (RFC 3325 §9.1) is
//! preferred over From because the trunk asserts it while From is whatever the caller's side wrote.

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
    /// User part of the From URI.
    pub from_user: Option<String>,
    /// The raw Privacy header value(s); several headers may be joined with `,`.
    pub privacy: Option<String>,
    /// Host part of the From URI.
    pub from_host: Option<String>,
}

impl fmt::Debug for CallerInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerInput")
            .field(
                "p_asserted_user",
                &self.p_asserted_user.as_ref().map(|_| "…"),
            )
            .field("from_user", &self.from_user.as_ref().map(|_| "…"))
            .field("privacy", &self.privacy.as_ref().map(|_| "…"))
            .field("from_host", &self.from_host.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Decides the caller identity. Never fails: anything unusable is [`CallerIdentity::Withheld`].
pub fn identify(input: &CallerInput, normalizer: &Normalizer) -> CallerIdentity {
    if input.privacy.as_deref().is_some_and(asks_for_privacy) {
        return CallerIdentity::Withheld;
    }
    let anonymous_host = input
        .from_host
        .as_deref()
        .is_some_and(|h| h.trim().eq_ignore_ascii_case("anonymous.invalid"));
    let users = [input.p_asserted_user.as_deref(), input.from_user.as_deref()];
    if anonymous_host || users.into_iter().flatten().any(is_anonymous) {
        return CallerIdentity::Withheld;
    }
    // A PAI whose user part is not a number (a trunk's own SIP URI, say) says nothing about the
    // caller, so From still gets its turn.
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

fn is_anonymous(user: &str) -> bool {
    user.trim().eq_ignore_ascii_case("anonymous")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn input(pai: Option<&str>, from: Option<&str>, privacy: Option<&str>) -> CallerInput {
        CallerInput {
            p_asserted_user: pai.map(str::to_owned),
            from_user: from.map(str::to_owned),
            privacy: privacy.map(str::to_owned),
            from_host: Some("carrier.example".to_owned()),
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
    fn debug_does_not_show_header_values() {
        let shown = format!("{:?}", input(Some("+4930123456"), None, Some("id")));
        assert!(!shown.contains("30123456"), "{shown}");
        assert!(!shown.contains("id\""), "{shown}");
        assert!(shown.contains("p_asserted_user: Some"), "{shown}");
    }
}
