//! Declarative description of one carrier's CDR CSV export.
//!
//! A format is plain data (the config embeds it as `[cdr.formats.NAME]`), so a new carrier
//! is a TOML table rather than code. CSV itself is RFC 4180 as the `csv` crate reads it;
//! times follow RFC 3339 or a chrono strftime pattern; cause codes are SIP status codes
//! (RFC 3261 §21) or ITU-T Q.850 cause values, mapped in `row.rs`.
//!
//! `validate` checks everything that can be checked without a file and names the offending
//! key in fixed words, so a config error never echoes the config's text.
//!
//! Withheld callers (CLIR) are declared here too: `columns.presentation` with the values in
//! `presentation_restricted`, and `withheld_words` for carriers that write the restriction into
//! the calling-number cell; `withheld.rs` applies them.

use std::collections::BTreeMap;

use chrono::format::{Item, StrftimeItems};
use serde::Deserialize;

use super::row::Disposition;

/// Where a field lives in the carrier's rows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Column {
    /// 0-based position, for files without a header.
    Index(usize),
    /// Header name, for files with a header (matched exactly after trimming).
    Name(String),
}

/// Our fields mapped to the carrier's columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub record_id: Option<Column>,
    pub call_id: Option<Column>,
    pub start: Option<Column>,
    pub answer: Option<Column>,
    pub end: Option<Column>,
    pub duration: Option<Column>,
    pub calling_number: Option<Column>,
    pub called_number: Option<Column>,
    pub disposition: Option<Column>,
    pub cause_code: Option<Column>,
    pub trunk: Option<Column>,
    /// The caller's presentation indicator (CLIR), compared with `presentation_restricted`.
    pub presentation: Option<Column>,
}

impl Columns {
    /// Every configured column with the key it was configured under.
    pub(crate) fn named(&self) -> impl Iterator<Item = (&'static str, &Column)> {
        [
            ("columns.record_id", &self.record_id),
            ("columns.call_id", &self.call_id),
            ("columns.start", &self.start),
            ("columns.answer", &self.answer),
            ("columns.end", &self.end),
            ("columns.duration", &self.duration),
            ("columns.calling_number", &self.calling_number),
            ("columns.called_number", &self.called_number),
            ("columns.disposition", &self.disposition),
            ("columns.cause_code", &self.cause_code),
            ("columns.trunk", &self.trunk),
            ("columns.presentation", &self.presentation),
        ]
        .into_iter()
        .filter_map(|(key, col)| col.as_ref().map(|c| (key, c)))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// Read as Windows-1252, which is what real "Latin-1" exports contain (the WHATWG
    /// Encoding Standard maps the `latin1` label the same way for that reason).
    #[serde(rename = "latin-1")]
    Latin1,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DurationUnit {
    #[default]
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "ms")]
    Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CauseKind {
    /// SIP final status code, RFC 3261 §21.
    Sip,
    /// ITU-T Q.850 cause value (as carried in RFC 3326 `Reason: Q.850;cause=N`).
    Q850,
}

/// How time cells are written, after `validate` has checked the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    Rfc3339,
    EpochSeconds,
    EpochMillis,
    /// A chrono strftime pattern without offset, read as local time in `time_zone`.
    Pattern(String),
}

/// One carrier export format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Format {
    pub delimiter: char,
    #[serde(default = "default_quote")]
    pub quote: char,
    pub has_header: bool,
    #[serde(default)]
    pub encoding: Encoding,
    pub columns: Columns,
    #[serde(default)]
    pub duration_unit: DurationUnit,
    #[serde(default)]
    pub cause_kind: Option<CauseKind>,
    /// `rfc3339`, `epoch_seconds`, `epoch_millis`, or a chrono strftime pattern.
    pub time_format: String,
    /// IANA zone for pattern times; ignored for RFC 3339 and epoch times.
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// Carrier disposition words (case-insensitive) to ours.
    #[serde(default)]
    pub disposition_map: BTreeMap<String, Disposition>,
    /// Words in the calling-number cell that mean the caller withheld the number (whole cell or
    /// a word inside it, case-insensitive). Setting the key replaces the defaults.
    #[serde(default = "default_withheld_words")]
    pub withheld_words: Vec<String>,
    /// Values of `columns.presentation` that mean "presentation restricted" (whole cell,
    /// case-insensitive). Setting the key replaces the defaults.
    #[serde(default = "default_presentation_restricted")]
    pub presentation_restricted: Vec<String>,
}

/// What carriers write into the calling-number cell for a withheld caller.
pub const DEFAULT_WITHHELD_WORDS: [&str; 8] = [
    "anonym",
    "anonymous",
    "restricted",
    "withheld",
    "unknown",
    "private",
    "unavailable",
    "clir",
];

/// Presentation-column values for "restricted": `1` is the ISUP address presentation
/// restricted indicator (ITU-T Q.763, calling party number: 0 allowed, 1 restricted); the rest are the flags
/// and words of carrier portals.
pub const DEFAULT_PRESENTATION_RESTRICTED: [&str; 8] = [
    "1",
    "y",
    "yes",
    "true",
    "restricted",
    "prohibited",
    "clir",
    "anonymous",
];

fn default_withheld_words() -> Vec<String> {
    DEFAULT_WITHHELD_WORDS.map(str::to_owned).to_vec()
}

fn default_presentation_restricted() -> Vec<String> {
    DEFAULT_PRESENTATION_RESTRICTED.map(str::to_owned).to_vec()
}

fn default_quote() -> char {
    '"'
}

fn default_zone() -> String {
    "UTC".to_owned()
}

/// A format problem, naming the key; never contains the configured value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{0} is required")]
    Required(&'static str),
    #[error("{0} must be a single ASCII character other than a line break")]
    NotAscii(&'static str),
    #[error("{0} must be a header name because has_header is true")]
    WantName(&'static str),
    #[error("{0} must be a column index because has_header is false")]
    WantIndex(&'static str),
    #[error("columns.duration is required unless columns.answer and columns.end are both set")]
    NoDuration,
    #[error("columns.disposition or columns.cause_code is required")]
    NoOutcome,
    #[error("cause_kind is required when columns.cause_code is set")]
    NoCauseKind,
    #[error("time_format is not a valid strftime pattern")]
    BadTimeFormat,
    #[error("time_zone is not a known IANA zone name")]
    BadZone,
    #[error("{0} names a column that is not in the file header")]
    NotInHeader(&'static str),
    #[error("the file has no header row")]
    NoHeader,
    #[error("built-in preset {0} does not parse")]
    Preset(&'static str),
    #[error("{0} must not contain an empty entry")]
    EmptyEntry(&'static str),
    #[error(
        "withheld_words entries must contain a letter (a cell that is not a phone number counts as withheld anyway)"
    )]
    WordWithoutLetter,
    #[error("presentation_restricted must not be empty when columns.presentation is set")]
    NoRestrictedValues,
}

impl Format {
    /// Checks the format as far as possible without a file.
    pub fn validate(&self) -> Result<(), FormatError> {
        ascii(self.delimiter, "delimiter")?;
        ascii(self.quote, "quote")?;
        let c = &self.columns;
        for (key, col) in [
            ("columns.record_id", &c.record_id),
            ("columns.start", &c.start),
            ("columns.calling_number", &c.calling_number),
            ("columns.called_number", &c.called_number),
        ] {
            if col.is_none() {
                return Err(FormatError::Required(key));
            }
        }
        for (key, col) in c.named() {
            match (self.has_header, col) {
                (true, Column::Index(_)) => return Err(FormatError::WantName(key)),
                (false, Column::Name(_)) => return Err(FormatError::WantIndex(key)),
                _ => {}
            }
        }
        if c.duration.is_none() && (c.answer.is_none() || c.end.is_none()) {
            return Err(FormatError::NoDuration);
        }
        if c.disposition.is_none() && c.cause_code.is_none() {
            return Err(FormatError::NoOutcome);
        }
        if c.cause_code.is_some() && self.cause_kind.is_none() {
            return Err(FormatError::NoCauseKind);
        }
        self.validate_withheld()?;
        self.time()?;
        self.zone()?;
        Ok(())
    }

    fn validate_withheld(&self) -> Result<(), FormatError> {
        let blank = |list: &[String]| list.iter().any(|w| w.trim().is_empty());
        if blank(&self.withheld_words) {
            return Err(FormatError::EmptyEntry("withheld_words"));
        }
        // A digit-only word would fire inside spaced-out numbers ("0 30 5550 …"): a number
        // placeholder is better left to normalization, which withholds what is not a number.
        if !self
            .withheld_words
            .iter()
            .all(|w| w.chars().any(char::is_alphabetic))
        {
            return Err(FormatError::WordWithoutLetter);
        }
        if blank(&self.presentation_restricted) {
            return Err(FormatError::EmptyEntry("presentation_restricted"));
        }
        if self.columns.presentation.is_some() && self.presentation_restricted.is_empty() {
            return Err(FormatError::NoRestrictedValues);
        }
        Ok(())
    }

    /// The parsed `time_format`.
    pub fn time(&self) -> Result<TimeFormat, FormatError> {
        Ok(match self.time_format.as_str() {
            "rfc3339" => TimeFormat::Rfc3339,
            "epoch_seconds" => TimeFormat::EpochSeconds,
            "epoch_millis" => TimeFormat::EpochMillis,
            p => {
                let items = StrftimeItems::new(p);
                if p.is_empty() || items.clone().any(|i| matches!(i, Item::Error)) {
                    return Err(FormatError::BadTimeFormat);
                }
                TimeFormat::Pattern(p.to_owned())
            }
        })
    }

    /// The parsed `time_zone`.
    pub fn zone(&self) -> Result<chrono_tz::Tz, FormatError> {
        self.time_zone.parse().map_err(|_| FormatError::BadZone)
    }
}

fn ascii(c: char, key: &'static str) -> Result<(), FormatError> {
    if c.is_ascii() && c != '\n' && c != '\r' {
        Ok(())
    } else {
        Err(FormatError::NotAscii(key))
    }
}

const PRESETS: [(&str, &str); 3] = [
    (
        "telekom-style",
        include_str!("../../fixtures/cdr/presets/telekom-style.toml"),
    ),
    (
        "sipcarrier-csv",
        include_str!("../../fixtures/cdr/presets/sipcarrier-csv.toml"),
    ),
    (
        "legacy-noheader",
        include_str!("../../fixtures/cdr/presets/legacy-noheader.toml"),
    ),
];

/// The shipped presets by name, validated.
pub fn builtin_presets() -> Result<BTreeMap<String, Format>, FormatError> {
    PRESETS
        .iter()
        .map(|(name, text)| {
            let format: Format = toml::from_str(text).map_err(|_| FormatError::Preset(name))?;
            format.validate()?;
            Ok(((*name).to_owned(), format))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn base() -> Format {
        toml::from_str(
            r#"
            delimiter = ","
            has_header = true
            time_format = "rfc3339"
            cause_kind = "sip"
            [columns]
            record_id = "id"
            start = "start"
            duration = "dur"
            calling_number = "from"
            called_number = "to"
            cause_code = "status"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn builtin_presets_parse_and_validate() {
        let presets = builtin_presets().unwrap();
        assert_eq!(presets.len(), 3);
        assert_eq!(presets["telekom-style"].encoding, Encoding::Latin1);
        assert!(!presets["legacy-noheader"].has_header);
    }

    #[test]
    fn minimal_format_validates() {
        assert_eq!(base().validate(), Ok(()));
    }

    #[test]
    fn missing_start_names_the_field() {
        let mut f = base();
        f.columns.start = None;
        let err = f.validate().unwrap_err();
        assert_eq!(err.to_string(), "columns.start is required");
    }

    #[test]
    fn index_column_in_header_format_names_the_field() {
        let mut f = base();
        f.columns.trunk = Some(Column::Index(3));
        assert_eq!(
            f.validate().unwrap_err().to_string(),
            "columns.trunk must be a header name because has_header is true"
        );
    }

    #[test]
    fn cause_code_without_kind_is_rejected() {
        let mut f = base();
        f.cause_kind = None;
        assert_eq!(f.validate(), Err(FormatError::NoCauseKind));
    }

    #[test]
    fn no_duration_source_is_rejected() {
        let mut f = base();
        f.columns.duration = None;
        f.columns.end = Some(Column::Name("end".into()));
        assert_eq!(f.validate(), Err(FormatError::NoDuration));
        f.columns.answer = Some(Column::Name("ans".into()));
        assert_eq!(f.validate(), Ok(()));
    }

    #[test]
    fn bad_zone_and_pattern_are_named_without_echoing() {
        let mut f = base();
        f.time_zone = "Mars/Olympus_Mons".into();
        let msg = f.validate().unwrap_err().to_string();
        assert_eq!(msg, "time_zone is not a known IANA zone name");
        assert!(!msg.contains("Mars"));
        let mut f = base();
        f.time_format = "%Y-%Q".into();
        assert_eq!(f.validate(), Err(FormatError::BadTimeFormat));
    }

    #[test]
    fn non_ascii_delimiter_is_rejected() {
        let mut f = base();
        f.delimiter = '§';
        assert_eq!(f.validate(), Err(FormatError::NotAscii("delimiter")));
    }

    #[test]
    fn withheld_defaults_apply_unless_set() {
        let f = base();
        assert_eq!(f.withheld_words, DEFAULT_WITHHELD_WORDS);
        assert_eq!(f.presentation_restricted, DEFAULT_PRESENTATION_RESTRICTED);
        let f: Format = toml::from_str(
            r#"
            delimiter = ","
            has_header = true
            time_format = "rfc3339"
            withheld_words = ["unterdrückt"]
            presentation_restricted = ["J"]
            [columns]
            presentation = "clir"
            "#,
        )
        .unwrap();
        assert_eq!(f.withheld_words, ["unterdrückt"]);
        assert_eq!(f.presentation_restricted, ["J"]);
        assert_eq!(f.columns.presentation, Some(Column::Name("clir".into())));
    }

    #[test]
    fn withheld_lists_are_validated_without_echoing() {
        let mut f = base();
        f.withheld_words.push("  ".into());
        assert_eq!(
            f.validate().unwrap_err().to_string(),
            "withheld_words must not contain an empty entry"
        );
        let mut f = base();
        f.withheld_words = vec!["0049".into()];
        let msg = f.validate().unwrap_err().to_string();
        assert_eq!(f.validate(), Err(FormatError::WordWithoutLetter));
        assert!(!msg.contains("0049"));
        let mut f = base();
        f.presentation_restricted = vec![String::new()];
        assert_eq!(
            f.validate(),
            Err(FormatError::EmptyEntry("presentation_restricted"))
        );
        let mut f = base();
        f.presentation_restricted.clear();
        assert_eq!(f.validate(), Ok(()), "no column: the list is unused");
        f.columns.presentation = Some(Column::Name("clir".into()));
        assert_eq!(f.validate(), Err(FormatError::NoRestrictedValues));
        f.columns.presentation = Some(Column::Index(9));
        assert_eq!(
            f.validate(),
            Err(FormatError::WantName("columns.presentation"))
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r: Result<Format, _> = toml::from_str(
            r#"
            delimiter = ","
            has_header = true
            time_format = "rfc3339"
            colour = "blue"
            [columns]
            "#,
        );
        assert!(r.is_err());
    }
}
