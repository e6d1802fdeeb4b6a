//! Events about data-subject requests (GDPR Art. 15–21), beside the call events in the same
//! outbox and topic, so downstream stores learn of an erasure, objection or restriction the
//! same way they learnt of the calls.
//!
//! A request event carries the subject's caller pseudonyms (one per key epoch still held):
//! that is what downstream holds and must act on, never the number. The audit event carries
//! no personal data at all: which request, when, its receipt id, and how much was found.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Pseudonym;
use super::event::{SCHEMA_VERSION, format_timestamp};

/// The request a data subject (through the operator's DPO) made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Art. 17: erase what is held about the number.
    Erase,
    /// Art. 21: no further tracking with an identifier.
    Object,
    /// Art. 18: keep but mark, until lifted.
    Restrict,
    Unrestrict,
    /// Art. 15 and 20: the events about the number, as a file.
    Export,
}

impl Request {
    /// The request event downstream acts on; none for an export (nothing changes).
    fn event_type(self) -> Option<&'static str> {
        match self {
            Self::Erase => Some("subject.erasure_requested"),
            Self::Object => Some("subject.objection_recorded"),
            Self::Restrict => Some("subject.restriction_requested"),
            Self::Unrestrict => Some("subject.restriction_lifted"),
            Self::Export => None,
        }
    }
}

/// One caller pseudonym in a request event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectPseudonym {
    pub key_id: String,
    pub pseudonym: String,
}

#[derive(Serialize)]
struct RequestEvent<'a> {
    schema_version: u32,
    event_id: Uuid,
    event_type: &'static str,
    occurred_at: String,
    receipt_id: &'a str,
    caller_pseudonyms: Vec<SubjectPseudonym>,
}

#[derive(Serialize)]
struct AuditEvent<'a> {
    schema_version: u32,
    event_id: Uuid,
    event_type: &'static str,
    occurred_at: String,
    receipt_id: &'a str,
    request: Request,
    /// Local events found for the subject (erased, exported, or only counted).
    events_found: u64,
}

/// A fresh receipt id for a request: what the DPO files, and what ties the request event to
/// its audit event.
pub fn receipt_id() -> String {
    Uuid::now_v7().to_string()
}

/// The request event (for every request but export) and the audit event, as JSON lines.
pub fn events(
    request: Request,
    receipt_id: &str,
    pseudonyms: &[Pseudonym],
    events_found: u64,
    at: DateTime<Utc>,
) -> Vec<Vec<u8>> {
    let occurred_at = format_timestamp(at.trunc_subsecs(3));
    let mut lines = Vec::new();
    if let Some(event_type) = request.event_type() {
        let event = RequestEvent {
            schema_version: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            event_type,
            occurred_at: occurred_at.clone(),
            receipt_id,
            caller_pseudonyms: pseudonyms
                .iter()
                .map(|p| SubjectPseudonym {
                    key_id: p.key_id.clone(),
                    pseudonym: p.value.clone(),
                })
                .collect(),
        };
        lines.push(to_line(&event));
    }
    let audit = AuditEvent {
        schema_version: SCHEMA_VERSION,
        event_id: Uuid::now_v7(),
        event_type: "audit.subject_request",
        occurred_at,
        receipt_id,
        request,
        events_found,
    };
    lines.push(to_line(&audit));
    lines
}

fn to_line(event: &impl Serialize) -> Vec<u8> {
    // Strings, integers and enums only: serialization cannot fail.
    #[allow(clippy::expect_used)]
    serde_json::to_vec(event).expect("subject events always serialize")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn erase_makes_a_request_event_with_pseudonyms_and_an_audit_event_without() {
        let p = Pseudonym {
            key_id: "2026-12".into(),
            value: "0123456789abcdef0123456789abcdef".into(),
        };
        let lines = events(Request::Erase, "r-1", &[p], 3, Utc::now());
        assert_eq!(lines.len(), 2);
        let request: serde_json::Value = serde_json::from_slice(&lines[0]).unwrap();
        assert_eq!(request["event_type"], "subject.erasure_requested");
        assert_eq!(request["receipt_id"], "r-1");
        assert_eq!(
            request["caller_pseudonyms"][0]["pseudonym"],
            "0123456789abcdef0123456789abcdef"
        );
        let audit = String::from_utf8(lines[1].clone()).unwrap();
        assert!(audit.contains("\"event_type\":\"audit.subject_request\""));
        assert!(audit.contains("\"request\":\"erase\""));
        assert!(audit.contains("\"events_found\":3"));
        assert!(
            !audit.contains("0123456789abcdef"),
            "no pseudonym in the audit"
        );
    }

    #[test]
    fn export_is_audited_only() {
        let lines = events(Request::Export, "r-2", &[], 0, Utc::now());
        assert_eq!(lines.len(), 1);
        assert!(String::from_utf8_lossy(&lines[0]).contains("audit.subject_request"));
    }
}
