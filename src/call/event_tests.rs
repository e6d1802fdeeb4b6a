use std::collections::BTreeSet;

use chrono::TimeZone;
use serde_json::Value;

use super::*;
use crate::call::caller::{CallerInput, identify};
use crate::call::epoch::Rotation;
use crate::call::keyring::Keyring;
use crate::call::number::Normalizer;
use crate::call::privacy::{CallerPolicy, Policy, minimize};
use crate::call::pseudonym::Purpose;

const COMMON_REQUIRED: &[&str] = &[
    "schema_version",
    "event_id",
    "event_type",
    "occurred_at",
    "key_id",
    "call_key",
    "campaign_id",
    "tracking_number",
    "caller_withheld",
    "disclosure",
];
const COMMON_OPTIONAL: &[&str] = &["caller_pseudonym", "caller_region", "restricted", "consent"];
const DISCLOSED: &[&str] = &[
    "announcement_id",
    "announcement_version",
    "hook",
    "played_seconds",
    "complete",
    "recording_sha256",
    "outcome",
];
const ABANDONED: &[&str] = &["played_seconds"];
const COMPLETED_REQUIRED: &[&str] = &["duration_seconds", "disposition", "correlated"];
const COMPLETED_OPTIONAL: &[&str] = &["answered_at", "ended_at"];

/// (event_type, required keys, optional keys) as the schema promises consumers.
fn allowed(event_type: &str) -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let (req, opt): (&[&str], &[&str]) = match event_type {
        "call.offered" | "call.routed" => (&[], &[]),
        "call.disclosed" => (DISCLOSED, &[]),
        "call.abandoned" => (ABANDONED, &[]),
        "call.completed" => (COMPLETED_REQUIRED, COMPLETED_OPTIONAL),
        other => panic!("unknown type {other}"),
    };
    (
        COMMON_REQUIRED.iter().chain(req).copied().collect(),
        COMMON_OPTIONAL.iter().chain(opt).copied().collect(),
    )
}

fn t(ms: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 15, 30).unwrap()
        + chrono::Duration::milliseconds(ms.into())
}

fn common(caller: CallerFields, consent: Option<Consent>) -> Common {
    Common {
        event_id: "01936f0e-8c00-7a00-8000-000000000001".parse().unwrap(),
        occurred_at: t(123),
        key_id: "2026-11".to_owned(),
        call_key: "0123456789abcdef0123456789abcdef".to_owned(),
        campaign_id: "spring-sale".to_owned(),
        tracking_number: "+4930901820".parse().unwrap(),
        caller,
        disclosure: Disclosure::Played,
        consent,
    }
}

fn full_caller() -> CallerFields {
    CallerFields {
        pseudonym: Some("fedcba9876543210fedcba9876543210".to_owned()),
        withheld: false,
        region: Some("+49 89".to_owned()),
        restricted: false,
    }
}

/// SHA-256 of the empty input: any 64 lowercase hex characters would do.
const RECORDING: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn disclosed() -> Disclosed {
    Disclosed {
        announcement_id: "gdpr-de".to_owned(),
        announcement_version: "2026-11-01".into(),
        hook: Hook::EarlyMedia,
        played: Seconds::from_tenths(42),
        complete: true,
        recording_sha256: RECORDING.to_owned(),
        outcome: Outcome::Complete,
    }
}

fn completed(answered: bool) -> Completed {
    Completed {
        answered_at: answered.then(|| t(2_000)),
        ended_at: answered.then(|| t(65_000)),
        duration_seconds: 63,
        disposition: Disposition::Answered,
        correlated: Correlation::Sip,
    }
}

/// Every constructor, with optional fields both filled and empty.
fn every_event() -> Vec<CallEvent> {
    let mut out = Vec::new();
    for (caller, consent) in [
        (full_caller(), Some(Consent::Informed)),
        (
            CallerFields {
                withheld: true,
                ..CallerFields::default()
            },
            None,
        ),
    ] {
        let c = || common(caller.clone(), consent);
        out.push(CallEvent::offered(c()));
        out.push(CallEvent::routed(c()));
        out.push(CallEvent::disclosed(c(), disclosed()));
        out.push(CallEvent::abandoned(c(), Seconds::from_tenths(17)));
        out.push(CallEvent::completed(c(), completed(true)));
        out.push(CallEvent::completed(c(), completed(false)));
    }
    out
}

#[test]
fn disclosed_event_matches_golden_json() {
    let event = CallEvent::disclosed(common(full_caller(), Some(Consent::Informed)), disclosed());
    let golden = concat!(
        r#"{"schema_version":1,"event_id":"01936f0e-8c00-7a00-8000-000000000001","#,
        r#""event_type":"call.disclosed","occurred_at":"2026-11-24T10:15:30.123Z","#,
        r#""key_id":"2026-11","call_key":"0123456789abcdef0123456789abcdef","#,
        r#""campaign_id":"spring-sale","tracking_number":"+4930901820","#,
        r#""caller_pseudonym":"fedcba9876543210fedcba9876543210","caller_withheld":false,"#,
        r#""caller_region":"+49 89","disclosure":"played","consent":"informed","#,
        r#""announcement_id":"gdpr-de","announcement_version":"2026-11-01","hook":"early-media","#,
        r#""played_seconds":4.2,"complete":true,"#,
        r#""recording_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","#,
        r#""outcome":"complete"}"#
    );
    assert_eq!(String::from_utf8(event.to_json_line()).unwrap(), golden);
}

#[test]
fn every_constructor_writes_exactly_the_allowed_keys() {
    for event in every_event() {
        let v: Value = serde_json::from_slice(&event.to_json_line()).unwrap();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let ty = v["event_type"].as_str().unwrap();
        let (req, opt) = allowed(ty);
        assert!(
            req.is_subset(&keys),
            "{ty}: missing {:?}",
            req.difference(&keys)
        );
        let extra: Vec<_> = keys
            .iter()
            .filter(|k| !req.contains(*k) && !opt.contains(*k))
            .collect();
        assert!(extra.is_empty(), "{ty}: extra {extra:?}");
    }
}

#[test]
fn json_schema_file_agrees_with_the_allowed_keys() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/call-event.v1.json");
    let document: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        document["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let schema = &document["$defs"]["call_event"];
    assert_eq!(schema["additionalProperties"], false);
    let all: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let top_required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(top_required, COMMON_REQUIRED.iter().copied().collect());
    for ty in [
        "call.offered",
        "call.routed",
        "call.disclosed",
        "call.abandoned",
        "call.completed",
    ] {
        let branch = schema["allOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["if"]["properties"]["event_type"]["const"] == ty)
            .unwrap_or_else(|| panic!("no branch for {ty}"));
        let then = &branch["then"];
        let forbidden: BTreeSet<&str> = then["properties"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| **v == false)
                    .map(|(k, _)| k.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut required = top_required.clone();
        if let Some(r) = then["required"].as_array() {
            required.extend(r.iter().filter_map(Value::as_str));
        }
        let (req, opt) = allowed(ty);
        assert_eq!(required, req, "{ty} required");
        let permitted: BTreeSet<&str> = all.difference(&forbidden).copied().collect();
        assert_eq!(
            permitted,
            req.union(&opt).copied().collect(),
            "{ty} permitted"
        );
    }
}

#[test]
fn every_event_round_trips_through_json() {
    for event in every_event() {
        let back: CallEvent = serde_json::from_slice(&event.to_json_line()).unwrap();
        assert_eq!(back, event);
        assert!(!event.to_json_line().ends_with(b"\n"));
    }
}

#[test]
fn reading_refuses_unknown_foreign_and_missing_fields() {
    let line = CallEvent::offered(common(full_caller(), None)).to_json_line();
    let base: Value = serde_json::from_slice(&line).unwrap();
    let with = |k: &str, v: Value| {
        let mut x = base.clone();
        x[k] = v;
        serde_json::from_value::<CallEvent>(x)
    };
    assert!(with("caller_number", "+4930123456".into()).is_err());
    assert!(with("played_seconds", 1.0.into()).is_err());
    assert!(with("schema_version", 2.into()).is_err());
    assert!(with("event_type", "call.abandoned".into()).is_err());
    assert!(with("call_key", "+4930123456".into()).is_err());
    assert!(with("caller_pseudonym", "4930123456".into()).is_err());
    assert!(with("caller_withheld", true.into()).is_err());
    assert!(with("key_id", "../etc".into()).is_err());
    assert!(with("event_type", "call.routed".into()).is_ok());
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("disclosure");
    assert!(serde_json::from_value::<CallEvent>(missing).is_err());
}

#[test]
fn try_from_names_the_offending_field_without_values() {
    let mut v: Value =
        serde_json::from_slice(&CallEvent::offered(common(full_caller(), None)).to_json_line())
            .unwrap();
    v["event_type"] = "call.disclosed".into();
    let err = serde_json::from_value::<CallEvent>(v)
        .unwrap_err()
        .to_string();
    assert!(err.contains("announcement_id"), "{err}");
}

#[test]
fn disclosed_needs_a_hex_recording_hash_and_a_known_outcome() {
    let line = CallEvent::disclosed(common(full_caller(), None), disclosed()).to_json_line();
    let base: Value = serde_json::from_slice(&line).unwrap();
    let read = |v: Value| serde_json::from_value::<CallEvent>(v).map_err(|e| e.to_string());
    for field in ["recording_sha256", "outcome"] {
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove(field);
        let err = read(missing).unwrap_err();
        assert!(err.contains(field), "{err}");
    }
    for bad in [
        &RECORDING[..63],
        &RECORDING.to_uppercase(),
        "/etc/audio/notice.wav",
    ] {
        let mut v = base.clone();
        v["recording_sha256"] = bad.into();
        let err = read(v).unwrap_err();
        assert!(err.contains("SHA-256") && !err.contains(bad), "{err}");
    }
    let mut v = base.clone();
    v["outcome"] = "maybe".into();
    assert!(read(v).is_err());
    for (outcome, text) in [
        (Outcome::Complete, "complete"),
        (Outcome::Objected, "objected"),
        (Outcome::HungUp, "hung_up"),
        (Outcome::Unacknowledged, "unacknowledged"),
    ] {
        assert_eq!(serde_json::to_value(outcome).unwrap(), text);
    }
    // Only call.disclosed carries them.
    let mut routed: Value =
        serde_json::from_slice(&CallEvent::routed(common(full_caller(), None)).to_json_line())
            .unwrap();
    routed["outcome"] = "complete".into();
    assert!(read(routed).is_err());
}

#[test]
fn played_seconds_round_to_tenths() {
    assert_eq!(
        Seconds::from_duration(Duration::from_millis(2_345)).as_f64(),
        2.3
    );
    assert_eq!(
        Seconds::from_duration(Duration::from_millis(2_350)).as_f64(),
        2.4
    );
    assert_eq!(
        Seconds::from_duration(Duration::from_millis(49)).tenths(),
        0
    );
    let s: Seconds = serde_json::from_str("1.26").unwrap();
    assert_eq!(s.tenths(), 13);
    assert!(serde_json::from_str::<Seconds>("-1").is_err());
    assert!(serde_json::from_str::<Seconds>("1e300").is_err());
}

#[test]
fn common_new_truncates_to_millis_and_takes_key_id_from_call_key() {
    let c = Common::new(
        t(123) + chrono::Duration::microseconds(456),
        Pseudonym {
            key_id: "2026-W48".to_owned(),
            value: "0123456789abcdef0123456789abcdef".to_owned(),
        },
        "c1",
        "+4930901820".parse().unwrap(),
        CallerFields::default(),
        Disclosure::Skipped,
        None,
    );
    assert_eq!(c.occurred_at, t(123));
    assert_eq!(c.key_id, "2026-W48");
    assert_eq!(c.event_id.get_version_num(), 7);
    assert_eq!(format_timestamp(c.occurred_at), "2026-11-24T10:15:30.123Z");
}

#[test]
fn no_event_contains_the_raw_caller_number_or_call_id() {
    let tmp = tempfile::tempdir().unwrap();
    let at = t(0);
    let ring = Keyring::open_at(&tmp.path().join("keys"), Rotation::Monthly, at).unwrap();
    let normalizer = Normalizer::new("DE").unwrap();
    let raw_from = "+49 (89) 4711-0815";
    let call_id = "a84b4c76e66710@pc33.example.com";
    let identity = identify(
        &CallerInput {
            from_user: Some(raw_from.to_owned()),
            from_host: Some("carrier.example".to_owned()),
            ..CallerInput::default()
        },
        &normalizer,
    );
    let policy = Policy {
        caller: CallerPolicy::Pseudonymize,
        region_digits: Some(2),
    };
    let grounds = crate::call::Grounds {
        informed: true,
        consent: Some(Consent::Informed),
        restricted: false,
    };
    let caller = minimize(&identity, grounds, &policy, &ring, at).unwrap();
    assert!(
        caller.pseudonym.is_some(),
        "the test must exercise a pseudonymized caller"
    );
    let call_key = ring
        .pseudonymize(Purpose::CallKey, call_id.as_bytes(), at)
        .unwrap();
    let common = Common::new(
        at,
        call_key,
        "spring-sale",
        normalizer.normalize("+4930901820").unwrap(),
        caller,
        Disclosure::Played,
        Some(Consent::Informed),
    );
    let events = [
        CallEvent::offered(common.clone()),
        CallEvent::routed(common.clone()),
        CallEvent::disclosed(common.clone(), disclosed()),
        CallEvent::abandoned(common.clone(), Seconds::from_tenths(5)),
        CallEvent::completed(common, completed(true)),
    ];
    for event in events {
        let line = String::from_utf8(event.to_json_line()).unwrap();
        let digits: String = line.chars().filter(char::is_ascii_digit).collect();
        // Long needles only: pseudonyms are random hex, short digit runs may occur by chance.
        for needle in ["8947110815", "47110815", "89 4711"] {
            assert!(!line.contains(needle), "{needle} in {line}");
        }
        assert!(
            !line.contains("a84b4c76e66710") && !line.contains("pc33"),
            "{line}"
        );
        // The full number must not hide in the digits of a longer field either.
        assert!(!digits.contains("8947110815"), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["caller_region"], "+49 89");
    }
}
