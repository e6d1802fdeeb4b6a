//! Data-subject rights (GDPR Art. 15 access, Art. 17 erasure) for a phone number. Events hold no
//! number, only its keyed pseudonym per key epoch, so a request is answered by recomputing the
//! number's pseudonym under every key still held and finding the events that carry one of them.
//! Erasure of a whole epoch is `keys shred`; a single caller's local events can be listed here
//! for the operator to act on.

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};

use super::epoch;
use super::{E164, KeyError, Keyring, Pseudonym, Purpose};

/// The first instant of every key epoch still on disk.
pub fn epoch_starts(keyring: &Keyring) -> Result<Vec<DateTime<Utc>>, KeyError> {
    Ok(keyring
        .list()?
        .iter()
        .filter_map(|key| epoch::start(&key.key_id)?.and_hms_opt(0, 0, 0))
        .map(|midnight| Utc.from_utc_datetime(&midnight))
        .collect())
}

/// The caller pseudonyms `number` has had, one per key still on disk (future-dated keys
/// included: events were made with them). Creates no key.
pub fn pseudonyms(keyring: &Keyring, number: &E164) -> Result<Vec<Pseudonym>, KeyError> {
    keyring
        .list()?
        .iter()
        .map(|key| {
            keyring.pseudonym_under(Purpose::Caller, number.as_str().as_bytes(), &key.key_id)
        })
        .collect()
}

/// Keeps the JSON event lines whose `caller_pseudonym` is one of `pseudonyms`.
pub fn matching<'a>(
    pseudonyms: &[Pseudonym],
    lines: impl Iterator<Item = &'a [u8]>,
) -> Vec<&'a [u8]> {
    let wanted: HashSet<&str> = pseudonyms.iter().map(|p| p.value.as_str()).collect();
    lines
        .filter(|line| {
            serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| {
                    v.get("caller_pseudonym")
                        .and_then(|p| p.as_str())
                        .map(|p| wanted.contains(p))
                })
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Normalizer, Rotation};

    #[test]
    fn finds_the_events_of_one_caller_across_key_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::open(&dir.path().join("keys"), Rotation::Monthly).unwrap();
        let number = Normalizer::new("DE")
            .unwrap()
            .normalize("+4917612345678")
            .unwrap();
        let other = Normalizer::new("DE")
            .unwrap()
            .normalize("+4917611111111")
            .unwrap();
        let oct = Utc.with_ymd_and_hms(2026, 10, 5, 12, 0, 0).unwrap();
        let nov = Utc.with_ymd_and_hms(2026, 11, 5, 12, 0, 0).unwrap();
        let p = |n: &E164, at| {
            keyring
                .pseudonymize(Purpose::Caller, n.as_str().as_bytes(), at)
                .unwrap()
                .value
        };
        let lines = [
            format!(r#"{{"caller_pseudonym":"{}"}}"#, p(&number, oct)),
            format!(r#"{{"caller_pseudonym":"{}"}}"#, p(&other, oct)),
            format!(r#"{{"caller_pseudonym":"{}"}}"#, p(&number, nov)),
            r#"{"caller_withheld":true}"#.to_owned(),
        ];
        let all = pseudonyms(&keyring, &number).unwrap();
        assert!(all.len() >= 2, "one per key epoch");
        let found = matching(&all, lines.iter().map(|l| l.as_bytes()));
        assert_eq!(found, vec![lines[0].as_bytes(), lines[2].as_bytes()]);
    }
}
