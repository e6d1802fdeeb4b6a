//! Bounds on what one CDR file may make the daemon hold, and the window of plausible CDR times.
//!
//! `[cdr.limits]` sets them for every feed and `cdr import`; a feed's own `limits` table
//! overrides single keys. Without bounds one unbalanced quote makes the CSV parser grow one
//! record to the end of the file, and a gzip bomb decompresses until memory or disk runs out;
//! systemd then restarts the daemon into the same file. Each bound is a quarantine reason
//! (`Bound`) naming its key, so an operator knows which one to raise.
//!
//! The time window keeps implausible rows (a carrier clock in 2099, an epoch-0 default) out of
//! the events: a future time would otherwise ask for a pseudonym key of a future epoch, and a
//! very old one for a key long shredded.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use super::row::{Field, Row};

/// Why a record or a file's stream was cut. Fixed words: stored as quarantine reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Bound {
    #[error("line longer than max_line_bytes")]
    LineBytes,
    #[error("record longer than max_record_bytes")]
    RecordBytes,
    #[error("quoted field spans more than max_record_lines lines (unbalanced quote)")]
    RecordLines,
    #[error("unbalanced quote")]
    UnbalancedQuote,
    #[error("more fields than max_fields")]
    Fields,
    #[error("gzip stream larger than max_decompressed_bytes; the rest of the file is not read")]
    DecompressedBytes,
    #[error("gzip stream expands more than max_gzip_ratio; the rest of the file is not read")]
    GzipRatio,
    #[error("time in column {0} is more than max_future_hours ahead")]
    Future(Field),
    #[error("time in column {0} is more than max_past_days old")]
    Past(Field),
}

/// The bounds in force for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub max_record_bytes: usize,
    pub max_record_lines: u64,
    pub max_fields: usize,
    pub max_decompressed_bytes: u64,
    pub max_gzip_ratio: u64,
    pub max_future_hours: u64,
    pub max_past_days: u64,
}

/// Gzip's ratio bound applies once this much is decompressed: a small file's header and first
/// rows can compress far better than the data that follows.
pub const RATIO_FLOOR: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Carrier rows are a few hundred bytes; 16 KiB is fifty times the widest we know.
            max_line_bytes: 16 * 1024,
            max_record_bytes: 64 * 1024,
            // A quoted newline (a trunk label written on two lines) is legal CSV but rare; a
            // record longer than this is an unbalanced quote swallowing the rows after it.
            max_record_lines: 4,
            max_fields: 256,
            // A day of a large carrier's CDRs is a few hundred MiB uncompressed.
            max_decompressed_bytes: 4 * 1024 * 1024 * 1024,
            // CSV compresses 5 to 20 times; a gzip bomb a thousand times.
            max_gzip_ratio: 100,
            // Carrier clocks drift and zones get misconfigured by hours, not days.
            max_future_hours: 24,
            max_past_days: 31,
        }
    }
}

/// `[cdr.limits]` or a feed's `limits`: every key optional, unset keys fall back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_line_bytes: Option<usize>,
    pub max_record_bytes: Option<usize>,
    pub max_record_lines: Option<u64>,
    pub max_fields: Option<usize>,
    pub max_decompressed_bytes: Option<u64>,
    pub max_gzip_ratio: Option<u64>,
    pub max_future_hours: Option<u64>,
    pub max_past_days: Option<u64>,
}

/// A limit that cannot work, named by its key (relative to the limits table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("limits.{0} must be above 0")]
    Zero(&'static str),
    #[error("limits.max_record_bytes must be at least limits.max_line_bytes")]
    RecordBelowLine,
}

impl LimitsError {
    /// The key, relative to the limits table.
    pub fn key(self) -> &'static str {
        match self {
            Self::Zero(key) => key,
            Self::RecordBelowLine => "max_record_bytes",
        }
    }

    /// What is wrong with the key, without naming it (the config error names it).
    pub fn message(self) -> &'static str {
        match self {
            Self::Zero(_) => "must be above 0",
            Self::RecordBelowLine => "must be at least max_line_bytes",
        }
    }
}

impl LimitsConfig {
    /// These settings over `base`.
    pub fn over(&self, base: Limits) -> Limits {
        Limits {
            max_line_bytes: self.max_line_bytes.unwrap_or(base.max_line_bytes),
            max_record_bytes: self.max_record_bytes.unwrap_or(base.max_record_bytes),
            max_record_lines: self.max_record_lines.unwrap_or(base.max_record_lines),
            max_fields: self.max_fields.unwrap_or(base.max_fields),
            max_decompressed_bytes: self
                .max_decompressed_bytes
                .unwrap_or(base.max_decompressed_bytes),
            max_gzip_ratio: self.max_gzip_ratio.unwrap_or(base.max_gzip_ratio),
            max_future_hours: self.max_future_hours.unwrap_or(base.max_future_hours),
            max_past_days: self.max_past_days.unwrap_or(base.max_past_days),
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), LimitsError> {
        let zero = [
            ("max_line_bytes", self.max_line_bytes as u64),
            ("max_record_bytes", self.max_record_bytes as u64),
            ("max_record_lines", self.max_record_lines),
            ("max_fields", self.max_fields as u64),
            ("max_decompressed_bytes", self.max_decompressed_bytes),
            ("max_gzip_ratio", self.max_gzip_ratio),
            ("max_future_hours", self.max_future_hours),
            ("max_past_days", self.max_past_days),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(LimitsError::Zero(key));
        }
        if self.max_record_bytes < self.max_line_bytes {
            return Err(LimitsError::RecordBelowLine);
        }
        Ok(())
    }

    /// Whether every time of `row` lies within the window around `now`.
    pub fn check_times(&self, row: &Row, now: DateTime<Utc>) -> Result<(), Bound> {
        let ahead = TimeDelta::try_hours(i64::try_from(self.max_future_hours).unwrap_or(i64::MAX))
            .unwrap_or(TimeDelta::MAX);
        let back = TimeDelta::try_days(i64::try_from(self.max_past_days).unwrap_or(i64::MAX))
            .unwrap_or(TimeDelta::MAX);
        let latest = now
            .checked_add_signed(ahead)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let earliest = now
            .checked_sub_signed(back)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let times = [
            (Field::Start, Some(row.start_utc)),
            (Field::Answer, row.answer_utc),
            (Field::End, row.end_utc),
        ];
        for (field, at) in times {
            match at {
                Some(t) if t > latest => return Err(Bound::Future(field)),
                Some(t) if t < earliest => return Err(Bound::Past(field)),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cdr::row::Disposition;

    fn row(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Row {
        Row {
            line: 2,
            record_id: "r".into(),
            call_id: None,
            start_utc: start,
            answer_utc: None,
            end_utc: end,
            duration_seconds: 0,
            calling_raw: String::new(),
            caller_withheld: false,
            called_raw: String::new(),
            disposition: Disposition::Busy,
            trunk: None,
        }
    }

    #[test]
    fn time_window_refuses_future_and_ancient_rows_naming_the_column() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let l = Limits::default();
        assert_eq!(l.check_times(&row(now, None), now), Ok(()));
        let hour = TimeDelta::hours(1);
        assert_eq!(l.check_times(&row(now + hour * 23, None), now), Ok(()));
        assert_eq!(
            l.check_times(&row(now + hour * 25, None), now),
            Err(Bound::Future(Field::Start))
        );
        assert_eq!(
            l.check_times(&row(now, Some(now + TimeDelta::days(4000))), now),
            Err(Bound::Future(Field::End))
        );
        assert_eq!(
            l.check_times(&row(now - TimeDelta::days(32), None), now),
            Err(Bound::Past(Field::Start))
        );
        assert_eq!(
            Bound::Future(Field::Start).to_string(),
            "time in column start is more than max_future_hours ahead"
        );
        let wide = Limits {
            max_past_days: u64::MAX,
            max_future_hours: u64::MAX,
            ..l
        };
        let epoch0 = DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(wide.check_times(&row(epoch0, None), now), Ok(()));
    }

    #[test]
    fn feed_limits_override_single_keys_and_are_validated_by_key() {
        let base: LimitsConfig = toml::from_str("max_fields = 40\nmax_past_days = 7\n").unwrap();
        let feed: LimitsConfig = toml::from_str("max_past_days = 2\n").unwrap();
        let l = feed.over(base.over(Limits::default()));
        assert_eq!((l.max_fields, l.max_past_days), (40, 2));
        assert_eq!(l.max_line_bytes, Limits::default().max_line_bytes);
        assert_eq!(l.validate(), Ok(()));
        assert!(toml::from_str::<LimitsConfig>("max_feilds = 1\n").is_err());
        let zero: LimitsConfig = toml::from_str("max_gzip_ratio = 0\n").unwrap();
        assert_eq!(
            zero.over(l).validate().unwrap_err().to_string(),
            "limits.max_gzip_ratio must be above 0"
        );
        let odd: LimitsConfig = toml::from_str("max_record_bytes = 100\n").unwrap();
        assert_eq!(odd.over(l).validate(), Err(LimitsError::RecordBelowLine));
    }
}
