//! Data minimization (GDPR Art. 5(1)(c), Art. 21 objection) for the caller part of an event.
//!
//! One function decides what of the caller survives into an event, so the SIP edge, the CDR
//! importer and the tests cannot each make up their own rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::caller::CallerIdentity;
use super::event::{CallerFields, Consent};
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

/// The caller fields of an event made at `at`. An objection or a `Drop` policy leaves neither
/// pseudonym nor region; `withheld` is still reported because it is a fact about the call, not
/// about the person. The pseudonym uses the key epoch of `at`: pass the same `at` as for the
/// call key so both carry the event's `key_id`.
pub fn minimize(
    identity: &CallerIdentity,
    consent: Option<Consent>,
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
    if consent == Some(Consent::Objected) || policy.caller == CallerPolicy::Drop {
        return Ok(CallerFields::default());
    }
    let pseudonym = keyring.pseudonymize(Purpose::Caller, number.as_str().as_bytes(), at)?;
    Ok(CallerFields {
        pseudonym: Some(pseudonym.value),
        withheld: false,
        region: policy.region_digits.map(|d| region(number, d)),
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

    #[test]
    fn pseudonymize_policy_keeps_pseudonym_and_region() {
        let (_t, ring, at) = setup();
        let f = minimize(&caller(), Some(Consent::Informed), &KEEP, &ring, at).unwrap();
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
        let f = minimize(&caller(), Some(Consent::Objected), &KEEP, &ring, at).unwrap();
        assert_eq!(f, CallerFields::default());
    }

    #[test]
    fn drop_policy_drops_pseudonym_and_region() {
        let (_t, ring, at) = setup();
        let policy = Policy {
            caller: CallerPolicy::Drop,
            ..KEEP
        };
        let f = minimize(&caller(), None, &policy, &ring, at).unwrap();
        assert_eq!(f, CallerFields::default());
    }

    #[test]
    fn withheld_caller_is_only_marked_withheld() {
        let (_t, ring, at) = setup();
        let f = minimize(&CallerIdentity::Withheld, None, &KEEP, &ring, at).unwrap();
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
