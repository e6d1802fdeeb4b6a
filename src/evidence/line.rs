//! One evidence line: the facts of a `call.disclosed` event about the announcement, and none
//! about the caller or the call (no `call_key`, no pseudonym, no region, no campaign).
//!
//! Canonical bytes are the compact JSON object of the seven fields in the order below, as
//! serde_json writes them. The line in the file is those bytes with `,"chain":"<64 hex>"`
//! inserted before the closing brace, so an auditor recovers the canonical bytes by deleting
//! that member (`sed 's/,"chain":"[0-9a-f]*"}$/}/'`) and never has to re-serialize JSON.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::call::event::format_timestamp;
use crate::call::{CallEvent, Detail, Outcome, Seconds};

/// The facts one line records. Field order is the order in the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub event_id: Uuid,
    /// RFC 3339, UTC, milliseconds, exactly as in the event.
    pub occurred_at: String,
    pub announcement_id: String,
    pub announcement_version: String,
    pub recording_sha256: String,
    pub played_seconds: Seconds,
    pub outcome: Outcome,
}

const CHAIN_MEMBER: &[u8] = b",\"chain\":\"";
/// `,"chain":"` + 64 hex + `"}`.
const SUFFIX_LEN: usize = CHAIN_MEMBER.len() + 64 + 2;

impl Entry {
    /// The entry of a `call.disclosed` event and the UTC day it belongs to; `None` for other
    /// event types.
    pub fn of(event: &CallEvent) -> Option<(NaiveDate, Entry)> {
        let Detail::Disclosed(d) = &event.detail else {
            return None;
        };
        let at = event.common.occurred_at;
        let entry = Entry {
            event_id: event.common.event_id,
            occurred_at: format_timestamp(at),
            announcement_id: d.announcement_id.clone(),
            announcement_version: d.announcement_version.clone(),
            recording_sha256: d.recording_sha256.clone(),
            played_seconds: d.played,
            outcome: d.outcome,
        };
        Some((at.date_naive(), entry))
    }

    /// The bytes the chain hashes.
    pub fn canonical(&self) -> Vec<u8> {
        // Strings, a UUID, a finite float and a unit enum: serde_json cannot fail on these.
        #[allow(clippy::expect_used)]
        serde_json::to_vec(self).expect("evidence entries always serialize")
    }
}

/// The file line (with its newline) for `canonical` bytes whose link is `chain`.
pub(super) fn encode(canonical: &[u8], chain: &[u8; 32]) -> Vec<u8> {
    let body = canonical.strip_suffix(b"}").unwrap_or(canonical);
    let mut line = Vec::with_capacity(body.len() + SUFFIX_LEN + 1);
    line.extend_from_slice(body);
    line.extend_from_slice(CHAIN_MEMBER);
    line.extend_from_slice(hex::encode(chain).as_bytes());
    line.extend_from_slice(b"\"}\n");
    line
}

/// A file line (without its newline) split into its entry, its canonical bytes and its stored
/// link; `None` when it is not an evidence line.
pub(super) fn split(line: &[u8]) -> Option<(Entry, Vec<u8>, [u8; 32])> {
    let cut = line.len().checked_sub(SUFFIX_LEN)?;
    let (body, suffix) = line.split_at(cut);
    let hex_part = suffix.strip_prefix(CHAIN_MEMBER)?.strip_suffix(b"\"}")?;
    if !hex_part
        .iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut chain = [0; 32];
    hex::decode_to_slice(hex_part, &mut chain).ok()?;
    let mut canonical = Vec::with_capacity(body.len() + 1);
    canonical.extend_from_slice(body);
    canonical.push(b'}');
    let entry = serde_json::from_slice(&canonical).ok()?;
    Some((entry, canonical, chain))
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(in super::super) fn entry(n: u8) -> Entry {
        Entry {
            event_id: format!("01936f0e-8c00-7a00-8000-0000000000{n:02x}")
                .parse()
                .unwrap(),
            occurred_at: format!("2026-11-24T10:15:{:02}.123Z", n % 60),
            announcement_id: "notice".to_owned(),
            announcement_version: "2026-11-01".to_owned(),
            recording_sha256: "ab".repeat(32),
            played_seconds: Seconds::from_tenths(42),
            outcome: Outcome::Complete,
        }
    }

    #[test]
    fn line_format_is_frozen() {
        let e = entry(1);
        let canonical = e.canonical();
        assert_eq!(
            String::from_utf8(canonical.clone()).unwrap(),
            concat!(
                r#"{"event_id":"01936f0e-8c00-7a00-8000-000000000001","#,
                r#""occurred_at":"2026-11-24T10:15:01.123Z","announcement_id":"notice","#,
                r#""announcement_version":"2026-11-01","recording_sha256":"#,
                r#""abababababababababababababababababababababababababababababababab","#,
                r#""played_seconds":4.2,"outcome":"complete"}"#
            )
        );
        let line = encode(&canonical, &[0x11; 32]);
        let text = String::from_utf8(line.clone()).unwrap();
        let expected = format!(r#""outcome":"complete","chain":"{}"}}"#, "11".repeat(32));
        assert!(text.ends_with(&format!("{expected}\n")), "{text}");
        let (back, back_canonical, chain) = split(&line[..line.len() - 1]).unwrap();
        assert_eq!((back, back_canonical, chain), (e, canonical, [0x11; 32]));
    }

    #[test]
    fn lines_that_are_not_ours_do_not_split() {
        let line = encode(&entry(1).canonical(), &[0x11; 32]);
        let line = &line[..line.len() - 1];
        let upper = String::from_utf8(line.to_vec())
            .unwrap()
            .replace("\"11", "\"1A");
        let extra = String::from_utf8(line.to_vec())
            .unwrap()
            .replace("{\"event_id\"", "{\"call_key\":\"x\",\"event_id\"");
        for bad in [
            &b""[..],
            b"{}",
            upper.as_bytes(),
            extra.as_bytes(),
            &line[1..],
        ] {
            assert!(split(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
