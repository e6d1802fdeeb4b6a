//! The few event fields the forwarder needs from a JSON line: the message key and the headers.
//!
//! Only these fields are parsed (other fields are skipped unparsed into values); the payload is
//! published as the exact line bytes, never re-serialized, so consumers see what the outbox holds.

use std::borrow::Cow;

use serde::Deserialize;

/// Header names, fixed so consumers can route without parsing the payload.
pub const EVENT_TYPE: &str = "event-type";
pub const SCHEMA_VERSION: &str = "schema-version";
pub const KEY_ID: &str = "key-id";

/// The routing fields of one event line; each is absent when the line lacks it.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Meta<'a> {
    /// Message key: keeps one call's events on one partition, hence in order.
    #[serde(default, borrow, deserialize_with = "text")]
    pub call_key: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "version")]
    pub schema_version: Option<String>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub key_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub occurred_at: Option<Cow<'a, str>>,
}

/// CloudEvents 1.0 Kafka protocol binding, binary content mode: attributes as `ce_` headers,
/// the event (our JSON line) as the value.
pub const CE_SPECVERSION: &str = "ce_specversion";
pub const CE_ID: &str = "ce_id";
pub const CE_SOURCE: &str = "ce_source";
pub const CE_TYPE: &str = "ce_type";
pub const CE_TIME: &str = "ce_time";
pub const CONTENT_TYPE: &str = "content-type";

/// A string borrowed from the line when it has no escapes (serde's own `Option<Cow>` always
/// copies); saves allocations on the hot path.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Text)
        }
    }
    d.deserialize_option(Text)
}

/// `schema_version` is a number in the schema; a string is accepted as it is.
fn version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        Num(u64),
        Text(String),
    }
    Ok(Option::<V>::deserialize(d)?.map(|v| match v {
        V::Num(n) => n.to_string(),
        V::Text(s) => s,
    }))
}

impl<'a> Meta<'a> {
    /// The routing fields of `line`, or `None` when it is not a JSON object of the expected
    /// shape (the record is then published without key and headers, never dropped).
    pub fn parse(line: &'a [u8]) -> Option<Meta<'a>> {
        serde_json::from_slice(line).ok()
    }

    /// `(name, value)` of each header present, in a fixed order.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (EVENT_TYPE, self.event_type.as_deref()),
            (SCHEMA_VERSION, self.schema_version.as_deref()),
            (KEY_ID, self.key_id.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
    }

    /// The CloudEvents headers for this event with `source`; `None` when the line lacks the
    /// required `event_id` or `event_type` (then only our own headers go out).
    pub fn cloudevents<'s>(
        &'s self,
        source: &'s str,
    ) -> Option<impl Iterator<Item = (&'static str, &'s str)>> {
        let id = self.event_id.as_deref()?;
        let kind = self.event_type.as_deref()?;
        let time = self.occurred_at.as_deref().map(|t| (CE_TIME, t));
        Some(
            [
                (CE_SPECVERSION, "1.0"),
                (CE_ID, id),
                (CE_SOURCE, source),
                (CE_TYPE, kind),
                (CONTENT_TYPE, "application/json"),
            ]
            .into_iter()
            .chain(time),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routing_fields_are_read_and_others_skipped() {
        let line = br#"{"event_id":"0190","event_type":"call.redirected","schema_version":3,
            "key_id":"k7","call_key":"ab12","nested":{"x":[1,2,{"y":null}]}}"#;
        let m = Meta::parse(line).unwrap();
        assert_eq!(m.call_key.as_deref(), Some("ab12"));
        let h: Vec<_> = m.headers().collect();
        assert_eq!(
            h,
            [
                ("event-type", "call.redirected"),
                ("schema-version", "3"),
                ("key-id", "k7")
            ]
        );
    }

    #[test]
    fn cloudevents_headers_come_from_the_event_fields() {
        let line = br#"{"event_id":"0190a","event_type":"call.offered","occurred_at":"2026-12-01T10:00:00.000Z","schema_version":1}"#;
        let m = Meta::parse(line).unwrap();
        let h: Vec<_> = m.cloudevents("urn:calltrackd").unwrap().collect();
        assert_eq!(
            h,
            [
                ("ce_specversion", "1.0"),
                ("ce_id", "0190a"),
                ("ce_source", "urn:calltrackd"),
                ("ce_type", "call.offered"),
                ("content-type", "application/json"),
                ("ce_time", "2026-12-01T10:00:00.000Z"),
            ]
        );
        assert!(
            Meta::parse(br#"{"event_type":"x"}"#)
                .unwrap()
                .cloudevents("s")
                .is_none()
        );
    }

    #[test]
    fn fields_borrow_from_the_line_unless_escaped() {
        let m = Meta::parse(br#"{"call_key":"plain","event_type":"a\"b"}"#).unwrap();
        assert!(matches!(m.call_key, Some(Cow::Borrowed("plain"))));
        assert_eq!(m.event_type.as_deref(), Some("a\"b"));
    }

    #[test]
    fn missing_fields_give_no_header_and_string_versions_pass() {
        let m = Meta::parse(br#"{"schema_version":"2"}"#).unwrap();
        assert_eq!(m.call_key, None);
        assert_eq!(m.headers().collect::<Vec<_>>(), [("schema-version", "2")]);
    }

    #[test]
    fn non_objects_and_wrong_types_are_not_parsed() {
        assert_eq!(Meta::parse(b"[1,2]"), None);
        assert_eq!(Meta::parse(b"not json"), None);
        assert_eq!(Meta::parse(br#"{"call_key":5}"#), None);
    }
}
