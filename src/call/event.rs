//! The call event schema, version 1: what leaves the daemon, one JSON object per line.
//!
//! This is the privacy boundary. An event carries pseudonyms (HMAC, see `pseudonym`), a coarse
//! region and business-owned facts (campaign, tracking number); never a caller number, display
//! name, address, Call-ID or header text. Consumers rely on the shape, so it is versioned
//! (`schema_version`), closed (unknown fields are refused on read) and described by
//! `schema/call-event.v1.json` (JSON Schema draft 2020-12). Timestamps are RFC 3339 §5.6 in UTC
//! with millisecond precision and `Z`; ids are UUIDv7 (RFC 9562 §5.7) so they sort by time.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::epoch;
use super::number::E164;
use super::pseudonym::Pseudonym;

/// The version written into every event.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a JSON event was refused on read. Fixed words and field names only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("schema_version is not the supported version")]
    SchemaVersion,
    #[error("field {0} is required for this event type")]
    Missing(&'static str),
    #[error("field {0} is not allowed for this event type")]
    Unexpected(&'static str),
    #[error("field {0} is not a pseudonym of 32 lowercase hex characters")]
    NotPseudonym(&'static str),
    #[error("field {0} is not a SHA-256 of 64 lowercase hex characters")]
    NotSha256(&'static str),
    #[error("key_id is not an epoch name")]
    KeyId,
    #[error("a withheld caller cannot have a pseudonym or region")]
    WithheldCaller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "call.offered")]
    Offered,
    #[serde(rename = "call.routed")]
    Routed,
    #[serde(rename = "call.disclosed")]
    Disclosed,
    #[serde(rename = "call.abandoned")]
    Abandoned,
    #[serde(rename = "call.completed")]
    Completed,
}

/// Whether the recording/processing disclosure announcement reached the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disclosure {
    NotPlayed,
    Played,
    Partial,
    /// Another system (the carrier, the destination PBX) announces.
    Delegated,
    /// The campaign needs no announcement.
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    Informed,
    Objected,
    Unknown,
    /// The caller objected on an earlier call (the suppression list): not asked again.
    #[serde(rename = "objected_earlier")]
    ObjectedEarlier,
}

/// How the announcement ended for the caller, for the disclosure evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Played to the end.
    Complete,
    /// The caller pressed the objection key (RFC 4733 or SIP INFO).
    Objected,
    /// The caller hung up (CANCEL) before the end.
    HungUp,
    /// Our reliable 183 was never acknowledged with PRACK (RFC 3262 §3), so the carrier may
    /// not have passed the early media on.
    Unacknowledged,
}

/// How the announcement was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// RFC 3960 early media before the redirect.
    EarlyMedia,
    External,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    Failed,
    Cancelled,
}

/// How a completed call was matched to its offer: by SIP identifiers, by a CDR heuristic
/// (number and time window), or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correlation {
    Sip,
    Heuristic,
    None,
}

/// A duration with 0.1 s precision, written as a JSON number of seconds (`2.3`). Finer
/// precision would only add noise: announcement playout is measured in 20 ms packets at best.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds {
    tenths: u64,
}

impl Seconds {
    pub fn from_tenths(tenths: u64) -> Self {
        Self { tenths }
    }

    /// Rounds to the nearest tenth of a second.
    pub fn from_duration(d: Duration) -> Self {
        let tenths = (d.as_millis() + 50) / 100;
        Self {
            tenths: u64::try_from(tenths).unwrap_or(u64::MAX),
        }
    }

    pub fn tenths(self) -> u64 {
        self.tenths
    }

    #[allow(clippy::cast_precision_loss)] // exact below 2^53 tenths, i.e. 28 million years
    pub fn as_f64(self) -> f64 {
        self.tenths as f64 / 10.0
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A year: no announcement or call phase lasts longer; bounds the float conversion.
        const MAX_SECONDS: f64 = 31_536_000.0;
        let secs = f64::deserialize(deserializer)?;
        if !secs.is_finite() || !(0.0..=MAX_SECONDS).contains(&secs) {
            return Err(serde::de::Error::custom("seconds out of range"));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked above
        let tenths = (secs * 10.0).round() as u64;
        Ok(Self { tenths })
    }
}

/// The caller part of an event, already minimized (see `privacy::minimize`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerFields {
    /// `Purpose::Caller` pseudonym value made with the event's key epoch.
    pub pseudonym: Option<String>,
    pub withheld: bool,
    pub region: Option<String>,
    /// Processing of this caller's data is restricted (GDPR Art. 18) until lifted.
    pub restricted: bool,
}

/// Fields every event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// The key epoch of `call_key` and the caller pseudonym.
    pub key_id: String,
    /// `Purpose::CallKey` pseudonym of the SIP Call-ID.
    pub call_key: String,
    pub campaign_id: String,
    /// Business-owned, so not personal data of the caller.
    pub tracking_number: E164,
    pub caller: CallerFields,
    pub disclosure: Disclosure,
    pub consent: Option<Consent>,
}

impl Common {
    /// A fresh UUIDv7 id; `occurred_at` truncated to the milliseconds the schema keeps, so an
    /// event reads back equal to what was written.
    pub fn new(
        occurred_at: DateTime<Utc>,
        call_key: Pseudonym,
        campaign_id: impl Into<String>,
        tracking_number: E164,
        caller: CallerFields,
        disclosure: Disclosure,
        consent: Option<Consent>,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            occurred_at: occurred_at.trunc_subsecs(3),
            key_id: call_key.key_id,
            call_key: call_key.value,
            campaign_id: campaign_id.into(),
            tracking_number,
            caller,
            disclosure,
            consent,
        }
    }
}

/// `call.disclosed`: the announcement outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosed {
    pub announcement_id: String,
    pub announcement_version: String,
    pub hook: Hook,
    pub played: Seconds,
    pub complete: bool,
    /// Lowercase hex SHA-256 of the WAV file of the variant that played: proves which
    /// recording, not only which configured version, the caller heard.
    pub recording_sha256: String,
    pub outcome: Outcome,
}

/// `call.completed`: the call's end, from SIP or a CDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: u64,
    pub disposition: Disposition,
    pub correlated: Correlation,
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    Offered,
    Routed,
    Disclosed(Disclosed),
    Abandoned { played: Seconds },
    Completed(Completed),
}

/// One call event. Serializes to the v1 JSON shape; deserializing refuses unknown fields,
/// fields of another event type and non-pseudonym values where pseudonyms belong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct CallEvent {
    pub common: Common,
    pub detail: Detail,
}

impl CallEvent {
    pub fn offered(common: Common) -> Self {
        Self {
            common,
            detail: Detail::Offered,
        }
    }

    pub fn routed(common: Common) -> Self {
        Self {
            common,
            detail: Detail::Routed,
        }
    }

    pub fn disclosed(common: Common, disclosed: Disclosed) -> Self {
        Self {
            common,
            detail: Detail::Disclosed(disclosed),
        }
    }

    pub fn abandoned(common: Common, played: Seconds) -> Self {
        Self {
            common,
            detail: Detail::Abandoned { played },
        }
    }

    pub fn completed(common: Common, completed: Completed) -> Self {
        Self {
            common,
            detail: Detail::Completed(completed),
        }
    }

    pub fn event_type(&self) -> EventType {
        match self.detail {
            Detail::Offered => EventType::Offered,
            Detail::Routed => EventType::Routed,
            Detail::Disclosed(_) => EventType::Disclosed,
            Detail::Abandoned { .. } => EventType::Abandoned,
            Detail::Completed(_) => EventType::Completed,
        }
    }

    /// The event as one line of JSON, without the trailing newline.
    pub fn to_json_line(&self) -> Vec<u8> {
        // Only strings, integers, bools and finite floats: serde_json cannot fail on these.
        #[allow(clippy::expect_used)]
        serde_json::to_vec(self).expect("call events always serialize")
    }
}

/// The flat JSON shape. Field order here is the order in the JSON line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    schema_version: u32,
    event_id: Uuid,
    event_type: EventType,
    #[serde(with = "timestamp")]
    occurred_at: DateTime<Utc>,
    key_id: String,
    call_key: String,
    campaign_id: String,
    tracking_number: E164,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller_pseudonym: Option<String>,
    caller_withheld: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller_region: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    restricted: bool,
    disclosure: Disclosure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consent: Option<Consent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    announcement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    announcement_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hook: Option<Hook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    played_seconds: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recording_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "timestamp_opt"
    )]
    answered_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "timestamp_opt"
    )]
    ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disposition: Option<Disposition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlated: Option<Correlation>,
}

impl From<CallEvent> for Wire {
    fn from(event: CallEvent) -> Self {
        let event_type = event.event_type();
        let c = event.common;
        let mut wire = Wire {
            schema_version: SCHEMA_VERSION,
            event_id: c.event_id,
            event_type,
            occurred_at: c.occurred_at,
            key_id: c.key_id,
            call_key: c.call_key,
            campaign_id: c.campaign_id,
            tracking_number: c.tracking_number,
            caller_pseudonym: c.caller.pseudonym,
            caller_withheld: c.caller.withheld,
            caller_region: c.caller.region,
            restricted: c.caller.restricted,
            disclosure: c.disclosure,
            consent: c.consent,
            announcement_id: None,
            announcement_version: None,
            hook: None,
            played_seconds: None,
            complete: None,
            recording_sha256: None,
            outcome: None,
            answered_at: None,
            ended_at: None,
            duration_seconds: None,
            disposition: None,
            correlated: None,
        };
        match event.detail {
            Detail::Offered | Detail::Routed => {}
            Detail::Disclosed(d) => {
                wire.announcement_id = Some(d.announcement_id);
                wire.announcement_version = Some(d.announcement_version);
                wire.hook = Some(d.hook);
                wire.played_seconds = Some(d.played);
                wire.complete = Some(d.complete);
                wire.recording_sha256 = Some(d.recording_sha256);
                wire.outcome = Some(d.outcome);
            }
            Detail::Abandoned { played } => wire.played_seconds = Some(played),
            Detail::Completed(d) => {
                wire.answered_at = d.answered_at;
                wire.ended_at = d.ended_at;
                wire.duration_seconds = Some(d.duration_seconds);
                wire.disposition = Some(d.disposition);
                wire.correlated = Some(d.correlated);
            }
        }
        wire
    }
}

impl TryFrom<Wire> for CallEvent {
    type Error = EventError;

    fn try_from(w: Wire) -> Result<Self, Self::Error> {
        if w.schema_version != SCHEMA_VERSION {
            return Err(EventError::SchemaVersion);
        }
        if epoch::start(&w.key_id).is_none() {
            return Err(EventError::KeyId);
        }
        check_pseudonym("call_key", Some(&w.call_key))?;
        check_pseudonym("caller_pseudonym", w.caller_pseudonym.as_deref())?;
        check_sha256("recording_sha256", w.recording_sha256.as_deref())?;
        if w.caller_withheld && (w.caller_pseudonym.is_some() || w.caller_region.is_some()) {
            return Err(EventError::WithheldCaller);
        }

        let present = [
            ("announcement_id", w.announcement_id.is_some()),
            ("announcement_version", w.announcement_version.is_some()),
            ("hook", w.hook.is_some()),
            ("played_seconds", w.played_seconds.is_some()),
            ("complete", w.complete.is_some()),
            ("recording_sha256", w.recording_sha256.is_some()),
            ("outcome", w.outcome.is_some()),
            ("answered_at", w.answered_at.is_some()),
            ("ended_at", w.ended_at.is_some()),
            ("duration_seconds", w.duration_seconds.is_some()),
            ("disposition", w.disposition.is_some()),
            ("correlated", w.correlated.is_some()),
        ];
        let allowed: &[&str] = match w.event_type {
            EventType::Offered | EventType::Routed => &[],
            EventType::Disclosed => &[
                "announcement_id",
                "announcement_version",
                "hook",
                "played_seconds",
                "complete",
                "recording_sha256",
                "outcome",
            ],
            EventType::Abandoned => &["played_seconds"],
            EventType::Completed => &[
                "answered_at",
                "ended_at",
                "duration_seconds",
                "disposition",
                "correlated",
            ],
        };
        if let Some((name, _)) = present.iter().find(|(n, p)| *p && !allowed.contains(n)) {
            return Err(EventError::Unexpected(name));
        }

        let detail = match w.event_type {
            EventType::Offered => Detail::Offered,
            EventType::Routed => Detail::Routed,
            EventType::Disclosed => Detail::Disclosed(Disclosed {
                announcement_id: need("announcement_id", w.announcement_id)?,
                announcement_version: need("announcement_version", w.announcement_version)?,
                hook: need("hook", w.hook)?,
                played: need("played_seconds", w.played_seconds)?,
                complete: need("complete", w.complete)?,
                recording_sha256: need("recording_sha256", w.recording_sha256)?,
                outcome: need("outcome", w.outcome)?,
            }),
            EventType::Abandoned => Detail::Abandoned {
                played: need("played_seconds", w.played_seconds)?,
            },
            EventType::Completed => Detail::Completed(Completed {
                answered_at: w.answered_at,
                ended_at: w.ended_at,
                duration_seconds: need("duration_seconds", w.duration_seconds)?,
                disposition: need("disposition", w.disposition)?,
                correlated: need("correlated", w.correlated)?,
            }),
        };
        Ok(CallEvent {
            common: Common {
                event_id: w.event_id,
                occurred_at: w.occurred_at,
                key_id: w.key_id,
                call_key: w.call_key,
                campaign_id: w.campaign_id,
                tracking_number: w.tracking_number,
                caller: CallerFields {
                    pseudonym: w.caller_pseudonym,
                    withheld: w.caller_withheld,
                    region: w.caller_region,
                    restricted: w.restricted,
                },
                disclosure: w.disclosure,
                consent: w.consent,
            },
            detail,
        })
    }
}

fn need<T>(name: &'static str, value: Option<T>) -> Result<T, EventError> {
    value.ok_or(EventError::Missing(name))
}

/// A guard against a writer putting a raw identifier where a pseudonym belongs.
fn check_pseudonym(name: &'static str, value: Option<&str>) -> Result<(), EventError> {
    match value {
        Some(v) if !is_lower_hex(v, 32) => Err(EventError::NotPseudonym(name)),
        _ => Ok(()),
    }
}

fn check_sha256(name: &'static str, value: Option<&str>) -> Result<(), EventError> {
    match value {
        Some(v) if !is_lower_hex(v, 64) => Err(EventError::NotSha256(name)),
        _ => Ok(()),
    }
}

fn is_lower_hex(v: &str, len: usize) -> bool {
    v.len() == len && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

mod timestamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| serde::de::Error::custom("timestamp is not RFC 3339"))
    }
}

mod timestamp_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::timestamp::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        super::timestamp::deserialize(d).map(Some)
    }
}

/// RFC 3339 text with milliseconds and `Z`, as events write it; for other modules' logs/tests.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "event_tests.rs"]
mod tests;
