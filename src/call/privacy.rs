//! Data minimization (GDPR Art. 5(1)(c), Art. 21 objection) for the caller part of an event.
//!
//! One function decides what of the caller survives into an event, and one decides whether the
//! caller was informed, so the SIP edge, the CDR importer and the tests cannot each make up
//! their own rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::caller::CallerIdentity;
use super::event::{CallerFields, Consent, Disclosure, Seconds};
use super::keyring::{KeyError, Keyring};
use super::pseudonym::Purpose;
use super::region::region;

/// What a campaign keeps of the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerPolicy {
    /// A per-epoch pseudonym, so repeat calls can be counted within an epoch.
    #[default]
    Pseudonymize,
    /// Nothing but whether the caller withheld their number.
    Drop,
}

/// A campaign's minimization settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub caller: CallerPolicy,
    /// Leading national digits kept in `caller_region`; `None` keeps no region at all.
    #[serde(default)]
    pub region_digits: Option<u8>,
}

/// What decides whether a caller may be identified in an event, besides the campaign's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grounds {
    /// The caller was told about the tracking before anything else happened (GDPR Art. 13):
    /// see [`informed`].
    pub informed: bool,
    pub consent: Option<Consent>,
    /// The caller's data is restricted (Art. 18): kept, marked, not to be processed further.
    pub restricted: bool,
}

/// The one rule for "was the caller informed": the whole notice was played, or it was played to
/// the announcement's configured point (`informed_after`), or another system announces
/// (`delegated`: the operator vouches for it). A notice cut short before that point, skipped, or
/// never played informs nobody.
pub fn informed(disclosure: Disclosure, played: Seconds, informed_after: Option<Seconds>) -> bool {
    match disclosure {
        Disclosure::Played | Disclosure::Delegated => true,
        Disclosure::Partial => informed_after.is_some_and(|point| played >= point),
        Disclosure::NotPlayed | Disclosure::Skipped => false,
    }
}

/// The caller fields of an event made at `at`. A pseudonym and region are kept only for a
/// caller who was informed, did not object (now or earlier) and whose campaign pseudonymizes;
/// `withheld` is still reported because it is a fact about the call, not about the person. The
/// pseudonym uses the key epoch of `at`: pass the same `at` as for the call key so both carry
/// the event's `key_id`.
pub fn minimize(
    identity: &CallerIdentity,
    grounds: Grounds,
    policy: &Policy,
    keyring: &Keyring,
    at: DateTime<Utc>,
) -> Result<CallerFields, KeyError> {
    let number = match identity {
        CallerIdentity::Withheld => {
            return Ok(CallerFields {
                withheld: true,
                ..CallerFields::default()
            });
        }
        CallerIdentity::Number(n) => n,
    };
    let objected = matches!(
        grounds.consent,
        Some(Consent::Objected | Consent::ObjectedEarlier)
    );
    if objected || !grounds.informed || policy.caller == CallerPolicy::Drop {
        return Ok(CallerFields {
            restricted: grounds.restricted,
            ..CallerFields::default()
        });
    }
    let pseudonym = keyring.pseudonymize(Purpose::Caller, number.as_str().as_bytes(), at)?;
    Ok(CallerFields {
        pseudonym: Some(pseudonym.value),
        withheld: false,
        region: policy.region_digits.map(|d| region(number, d)),
        restricted: grounds.restricted,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::call::epoch::Rotation;
    use chrono::TimeZone;

    fn setup() -> (tempfile::TempDir, Keyring, DateTime<Utc>) {
        let tmp = tempfile::tempdir().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        let ring = Keyring::open_at(&tmp.path().join("keys"), Rotation::Monthly, at).unwrap();
        (tmp, ring, at)
    }

    fn caller() -> CallerIdentity {
        CallerIdentity::Number("+4930123456".parse().unwrap())
    }

    const KEEP: Policy = Policy {
        caller: CallerPolicy::Pseudonymize,
        region_digits: Some(2),
    };

    fn told(consent: Option<Consent>) -> Grounds {
        Grounds {
            informed: true,
            consent,
            restricted: false,
        }
    }

    #[test]
    fn an_uninformed_caller_keeps_nothing_and_a_restricted_one_is_marked() {
        let (_t, ring, at) = setup();
        let grounds = Grounds {
            informed: false,
            ..told(Some(Consent::Unknown))
        };
        assert_eq!(
            minimize(&caller(), grounds, &KEEP, &ring, at).unwrap(),
            CallerFields::default()
        );
        let grounds = Grounds {
            restricted: true,
            ..told(Some(Consent::Informed))
        };
        let f = minimize(&caller(), grounds, &KEEP, &ring, at).unwrap();
        assert!(f.restricted && f.pseudonym.is_some());
    }

    #[test]
    fn informed_means_the_whole_notice_or_its_configured_point() {
        let s = Seconds::from_tenths;
        assert!(informed(Disclosure::Played, s(0), None));
        assert!(informed(Disclosure::Delegated, s(0), None));
        assert!(
            !informed(Disclosure::Partial, s(2), None),
            "default: the whole notice"
        );
        assert!(!informed(Disclosure::Partial, s(49), Some(s(50))));
        assert!(informed(Disclosure::Partial, s(50), Some(s(50))));
        assert!(!informed(Disclosure::NotPlayed, s(100), Some(s(0))));
        assert!(!informed(Disclosure::Skipped, s(100), Some(s(0))));
    }

    #[test]
    fn pseudonymize_policy_keeps_pseudonym_and_region() {
        let (_t, ring, at) = setup();
        let f = minimize(&caller(), told(Some(Consent::Informed)), &KEEP, &ring, at).unwrap();
        let want = ring
            .pseudonymize(Purpose::Caller, b"+4930123456", at)
            .unwrap();
        assert_eq!(f.pseudonym, Some(want.value));
        assert_eq!(f.region.as_deref(), Some("+49 30"));
        assert!(!f.withheld);
    }

    #[test]
    fn objection_drops_pseudonym_and_region() {
        let (_t, ring, at) = setup();
        for consent in [Consent::Objected, Consent::ObjectedEarlier] {
            let f = minimize(&caller(), told(Some(consent)), &KEEP, &ring, at).unwrap();
            assert_eq!(f, CallerFields::default());
        }
    }

    #[test]
    fn drop_policy_drops_pseudonym_and_region() {
        let (_t, ring, at) = setup();
        let policy = Policy {
            caller: CallerPolicy::Drop,
            ..KEEP
        };
        let f = minimize(&caller(), told(None), &policy, &ring, at).unwrap();
        assert_eq!(f, CallerFields::default());
    }

    #[test]
    fn withheld_caller_is_only_marked_withheld() {
        let (_t, ring, at) = setup();
        let f = minimize(&CallerIdentity::Withheld, told(None), &KEEP, &ring, at).unwrap();
        assert_eq!((f.pseudonym, f.withheld, f.region), (None, true, None));
    }

    #[test]
    fn policy_reads_from_config_shape() {
        let p: Policy = serde_json::from_str(r#"{"caller":"drop"}"#).unwrap();
        assert_eq!(
            p,
            Policy {
                caller: CallerPolicy::Drop,
                region_digits: None
            }
        );
        assert!(serde_json::from_str::<Policy>(r#"{"calller":"drop"}"#).is_err());
    }
}
