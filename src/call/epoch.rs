//! Key epochs: which key pseudonymizes an instant, and how key files are named.
//!
//! Rotating keys bound linkability: two calls from one number get the same caller pseudonym only
//! within one epoch, and shredding an epoch's key (Art. 17 GDPR erasure by crypto-shredding) makes
//! that epoch's pseudonyms unlinkable to any number forever. Key ids are dates in ISO 8601 forms
//! (`2026-11-24`, ISO week `2026-W48`, `2026-11`) so that files sort and read naturally.

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// How long one pseudonym key is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    Daily,
    Weekly,
    #[default]
    Monthly,
}

impl Rotation {
    /// The key id of the epoch that contains `at` (UTC).
    /// The first day of the epoch containing `at`: orders epochs without formatting key ids
    /// (the per-row future-epoch check of CDR ingest).
    pub fn first_day(self, at: DateTime<Utc>) -> NaiveDate {
        let day = at.date_naive();
        match self {
            Self::Daily => day,
            Self::Weekly => {
                day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()))
            }
            Self::Monthly => day.with_day(1).unwrap_or(day),
        }
    }

    pub fn key_id(self, at: DateTime<Utc>) -> String {
        let day = at.date_naive();
        match self {
            Self::Daily => day.format("%Y-%m-%d").to_string(),
            Self::Weekly => {
                let week = day.iso_week();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Self::Monthly => day.format("%Y-%m").to_string(),
        }
    }
}

/// The first day of the epoch a key id names, whatever its rotation, or `None` if the text is not
/// exactly a key id. Being exact also keeps key ids safe to use as file names.
pub fn start(key_id: &str) -> Option<NaiveDate> {
    let date = if let Some((year, week)) = key_id.split_once("-W") {
        NaiveDate::from_isoywd_opt(year.parse().ok()?, week.parse().ok()?, Weekday::Mon)?
    } else if key_id.len() == 7 {
        NaiveDate::parse_from_str(&format!("{key_id}-01"), "%Y-%m-%d").ok()?
    } else {
        NaiveDate::parse_from_str(key_id, "%Y-%m-%d").ok()?
    };
    let canonical = match key_id.len() {
        7 => date.format("%Y-%m").to_string(),
        8 => {
            let week = date.iso_week();
            format!("{:04}-W{:02}", week.year(), week.week())
        }
        _ => date.format("%Y-%m-%d").to_string(),
    };
    (canonical == key_id).then_some(date)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn key_ids_follow_iso_forms() {
        let t = at(2026, 11, 24, 12);
        assert_eq!(Rotation::Daily.key_id(t), "2026-11-24");
        assert_eq!(Rotation::Weekly.key_id(t), "2026-W48");
        assert_eq!(Rotation::Monthly.key_id(t), "2026-11");
        // ISO week-year differs from the calendar year around new year.
        assert_eq!(Rotation::Weekly.key_id(at(2027, 1, 1, 0)), "2026-W53");
    }

    #[test]
    fn start_accepts_only_exact_key_ids() {
        assert_eq!(start("2026-11"), NaiveDate::from_ymd_opt(2026, 11, 1));
        assert_eq!(start("2026-W48"), NaiveDate::from_ymd_opt(2026, 11, 23));
        assert_eq!(start("2026-11-24"), NaiveDate::from_ymd_opt(2026, 11, 24));
        for bad in [
            "",
            "2026-1",
            "2026-13",
            "../2026-11",
            "2026-11-24.key",
            "2026-W60",
            "2026-W5",
            "x",
        ] {
            assert_eq!(start(bad), None, "{bad}");
        }
    }

    #[test]
    fn first_day_is_the_start_of_the_key_id_epoch() {
        for rotation in [Rotation::Daily, Rotation::Weekly, Rotation::Monthly] {
            // Every day across a year boundary and an ISO week 53 (2026-W53).
            for day in 0..400 {
                let t = at(2026, 6, 1, 13) + chrono::Duration::days(day);
                assert_eq!(
                    Some(rotation.first_day(t)),
                    start(&rotation.key_id(t)),
                    "{rotation:?} at {t}"
                );
            }
        }
    }

    #[test]
    fn rotation_serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&Rotation::Weekly).unwrap(),
            "\"weekly\""
        );
        let r: Rotation = serde_json::from_str("\"monthly\"").unwrap();
        assert_eq!(r, Rotation::Monthly);
    }
}
