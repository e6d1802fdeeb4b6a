//! How precise the times in events are (`[privacy] time_precision`, issue #15).
//!
//! A millisecond timestamp together with the tracking number and region lets whoever holds the
//! destination's own call log single out one call, and through its pseudonym every call of that
//! caller in the key epoch. Coarser times weaken that join at the cost of ordering and latency
//! analysis. The wire format does not change: RFC 3339 with three fraction digits, so a coarser
//! time reads `…:05.000Z` or `…:00.000Z`. The events of one call keep their order by `event_id`
//! (a UUIDv7), not by `occurred_at`.

use chrono::{DateTime, SubsecRound, TimeDelta, Timelike, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TimePrecision {
    /// Milliseconds, the most the schema can carry.
    #[serde(rename = "ms")]
    Millisecond,
    #[default]
    #[serde(rename = "s")]
    Second,
    /// For strict settings: calls within one minute cannot be told apart by time.
    #[serde(rename = "minute")]
    Minute,
}

impl TimePrecision {
    /// `t` cut down (never rounded up, so a time is never in the future) to this precision.
    pub fn truncate(self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Millisecond => t.trunc_subsecs(3),
            Self::Second => t.trunc_subsecs(0),
            Self::Minute => t.trunc_subsecs(0) - TimeDelta::seconds(i64::from(t.second())),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::SecondsFormat;

    use super::*;

    fn wire(p: TimePrecision) -> String {
        let t = DateTime::parse_from_rfc3339("2024-05-01T12:34:56.789123Z")
            .unwrap()
            .with_timezone(&Utc);
        p.truncate(t).to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    #[test]
    fn ms_keeps_milliseconds() {
        assert_eq!(wire(TimePrecision::Millisecond), "2024-05-01T12:34:56.789Z");
    }

    #[test]
    fn s_drops_the_fraction() {
        assert_eq!(wire(TimePrecision::Second), "2024-05-01T12:34:56.000Z");
    }

    #[test]
    fn minute_drops_seconds_too() {
        assert_eq!(wire(TimePrecision::Minute), "2024-05-01T12:34:00.000Z");
    }

    #[test]
    fn config_words_and_default() {
        #[derive(Deserialize)]
        struct T {
            p: TimePrecision,
        }
        for (word, want) in [
            ("ms", TimePrecision::Millisecond),
            ("s", TimePrecision::Second),
            ("minute", TimePrecision::Minute),
        ] {
            let t: T = toml::from_str(&format!("p = \"{word}\"")).unwrap();
            assert_eq!(t.p, want);
        }
        assert!(toml::from_str::<T>("p = \"hour\"").is_err());
        assert_eq!(TimePrecision::default(), TimePrecision::Second);
    }
}
