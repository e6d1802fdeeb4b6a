//! Sans-IO row mapper: one carrier CSV record in, one normalized [`Row`] (or a quarantine
//! reason) out.
//!
//! Outcomes are normalized to one set, [`Disposition`]. The tables, in order of precedence:
//!
//! 1. A non-empty `disposition` cell wins: looked up case-insensitively in the format's
//!    `disposition_map`, else accepted if it is one of our own words (`answered`, `busy`,
//!    `no_answer`, `failed`, `cancelled`), else the row is quarantined.
//! 2. Otherwise the `cause_code` cell, with "answered" meaning an answer time is present or
//!    the duration is above zero:
//!
//! | SIP status (RFC 3261 §21)    | ours        |
//! |------------------------------|-------------|
//! | 2xx                          | answered    |
//! | 486 Busy Here, 600 Busy Everywhere | busy  |
//! | 408 Request Timeout, 480 Temporarily Unavailable | no_answer |
//! | 487 Request Terminated (caller hung up, CANCEL) | cancelled |
//! | any other 3xx–6xx            | failed      |
//! | anything else                | quarantined |
//!
//! | Q.850 cause                  | ours        |
//! |------------------------------|-------------|
//! | 16 normal clearing, answered | answered    |
//! | 16 normal clearing, not answered | cancelled (the caller cleared before answer) |
//! | 17 user busy                 | busy        |
//! | 18 no user responding, 19 no answer | no_answer |
//! | 31 normal unspecified        | answered if answered, else no_answer |
//! | any other 1–127              | failed      |
//! | anything else                | quarantined |
//!
//! Duration comes from the duration column (rounded up to whole seconds, so a short answered
//! call never reads as zero), else from `end - answer`, else 0 for unanswered calls.
//!
//! Numbers stay raw here: E.164 normalization and pseudonyms are `call::Normalizer`'s job.
//! Whether the caller withheld the number (CLIR) is decided here, by the format's presentation
//! column and withheld words (`withheld.rs`); an empty calling cell is a withheld caller, not a
//! bad row. Row errors are fixed words naming the column, never its contents.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, TimeZone, Utc};

use super::format::{CauseKind, Column, DurationUnit, Encoding, Format, FormatError, TimeFormat};
use super::withheld;

/// Our normalized call outcome: the event schema's own set.
pub use crate::call::Disposition;

// The carrier-code mappings live with the CDR mapper, beside the tables in this module's doc.
impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        [
            Self::Answered,
            Self::Busy,
            Self::NoAnswer,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(word))
    }

    /// SIP final status to ours; `None` for codes that are not a final failure or success.
    pub fn from_sip(code: u16) -> Option<Self> {
        Some(match code {
            200..=299 => Self::Answered,
            486 | 600 => Self::Busy,
            408 | 480 => Self::NoAnswer,
            487 => Self::Cancelled,
            300..=699 => Self::Failed,
            _ => return None,
        })
    }

    /// Q.850 cause to ours; `answered` is the row's evidence of an answer.
    pub fn from_q850(cause: u16, answered: bool) -> Option<Self> {
        Some(match cause {
            16 if answered => Self::Answered,
            16 => Self::Cancelled,
            17 => Self::Busy,
            18 | 19 => Self::NoAnswer,
            31 if answered => Self::Answered,
            31 => Self::NoAnswer,
            1..=127 => Self::Failed,
            _ => return None,
        })
    }
}

/// Our fields, named as in the format's `columns` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    RecordId,
    CallId,
    Start,
    Answer,
    End,
    Duration,
    CallingNumber,
    CalledNumber,
    Disposition,
    CauseCode,
    Trunk,
    Presentation,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecordId => "record_id",
            Self::CallId => "call_id",
            Self::Start => "start",
            Self::Answer => "answer",
            Self::End => "end",
            Self::Duration => "duration",
            Self::CallingNumber => "calling_number",
            Self::CalledNumber => "called_number",
            Self::Disposition => "disposition",
            Self::CauseCode => "cause_code",
            Self::Trunk => "trunk",
            Self::Presentation => "presentation",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a row goes to quarantine. Fixed words: these are stored and counted as reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("missing column {0}")]
    Missing(Field),
    #[error("empty column {0}")]
    Empty(Field),
    #[error("bad encoding in column {0}")]
    Encoding(Field),
    #[error("bad time in column {0}")]
    Time(Field),
    #[error("bad number in column duration")]
    Duration,
    #[error("end before answer")]
    EndBeforeAnswer,
    #[error("bad cause code in column cause_code")]
    Cause,
    #[error("unknown word in column disposition")]
    Word,
    #[error("no disposition or cause code")]
    NoOutcome,
    /// The record, or the file's stream, broke one of the feed's limits.
    #[error(transparent)]
    Bound(#[from] super::limits::Bound),
}

/// One normalized CDR. `Debug` redacts the numbers and the Call-ID.
#[derive(Clone, PartialEq, Eq)]
pub struct Row {
    /// Line of the file the row starts on (set by the reader's caller; 0 when unknown).
    pub line: u64,
    pub record_id: String,
    pub call_id: Option<String>,
    pub start_utc: DateTime<Utc>,
    pub answer_utc: Option<DateTime<Utc>>,
    pub end_utc: Option<DateTime<Utc>>,
    pub duration_seconds: u64,
    /// The calling cell as written, even for a withheld caller: the quarantine may need it,
    /// an event never gets it.
    pub calling_raw: String,
    /// The caller withheld the number (CLIR): restricted presentation, an empty calling cell,
    /// or a withheld word in it.
    pub caller_withheld: bool,
    pub called_raw: String,
    pub disposition: Disposition,
    pub trunk: Option<String>,
}

/// The name the brief and the lead use.
pub type CdrRow = Row;

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "<redacted>";
        f.debug_struct("Row")
            .field("record_id", &self.record_id)
            .field("call_id", &self.call_id.as_ref().map(|_| HIDDEN))
            .field("start_utc", &self.start_utc)
            .field("answer_utc", &self.answer_utc)
            .field("end_utc", &self.end_utc)
            .field("duration_seconds", &self.duration_seconds)
            .field("calling_raw", &HIDDEN)
            .field("caller_withheld", &self.caller_withheld)
            .field("called_raw", &HIDDEN)
            .field("disposition", &self.disposition)
            .field("trunk", &self.trunk)
            .finish()
    }
}

enum Time {
    Rfc3339,
    EpochSeconds,
    EpochMillis,
    Pattern(Vec<Item<'static>>, chrono_tz::Tz),
}

#[derive(Default)]
struct Resolved {
    record_id: usize,
    call_id: Option<usize>,
    start: usize,
    answer: Option<usize>,
    end: Option<usize>,
    duration: Option<usize>,
    calling: usize,
    called: usize,
    disposition: Option<usize>,
    cause: Option<usize>,
    trunk: Option<usize>,
    presentation: Option<usize>,
}

/// Maps records of one file in one format.
pub struct Mapper {
    encoding: Encoding,
    delimiter: char,
    time: Time,
    unit: DurationUnit,
    cause: Option<CauseKind>,
    words: HashMap<String, Disposition>,
    withheld: withheld::Rule,
    cols: Resolved,
}

impl Mapper {
    /// Validates `format` and resolves its columns against `header` (required when the
    /// format has one).
    pub fn new(format: &Format, header: Option<&csv::ByteRecord>) -> Result<Self, FormatError> {
        format.validate()?;
        let time = match format.time()? {
            TimeFormat::Rfc3339 => Time::Rfc3339,
            TimeFormat::EpochSeconds => Time::EpochSeconds,
            TimeFormat::EpochMillis => Time::EpochMillis,
            TimeFormat::Pattern(p) => Time::Pattern(
                StrftimeItems::new(&p)
                    .parse_to_owned()
                    .map_err(|_| FormatError::BadTimeFormat)?,
                format.zone()?,
            ),
        };
        let names: Option<Vec<String>> = match (format.has_header, header) {
            (true, None) => return Err(FormatError::NoHeader),
            (true, Some(h)) => Some(
                h.iter()
                    .map(|b| decode(format.encoding, b).trim().to_owned())
                    .collect(),
            ),
            (false, _) => None,
        };
        let find =
            |key: &'static str, col: &Option<Column>| -> Result<Option<usize>, FormatError> {
                match (col, &names) {
                    (None, _) => Ok(None),
                    (Some(Column::Index(i)), None) => Ok(Some(*i)),
                    (Some(Column::Name(n)), Some(names)) => names
                        .iter()
                        .position(|h| h == n.trim())
                        .map(Some)
                        .ok_or(FormatError::NotInHeader(key)),
                    // `validate` already rejected mixing names and indexes.
                    (Some(Column::Index(_)), Some(_)) => Err(FormatError::WantName(key)),
                    (Some(Column::Name(_)), None) => Err(FormatError::WantIndex(key)),
                }
            };
        let req = |key: &'static str, col: &Option<Column>| -> Result<usize, FormatError> {
            find(key, col)?.ok_or(FormatError::Required(key))
        };
        let c = &format.columns;
        let cols = Resolved {
            record_id: req("columns.record_id", &c.record_id)?,
            call_id: find("columns.call_id", &c.call_id)?,
            start: req("columns.start", &c.start)?,
            answer: find("columns.answer", &c.answer)?,
            end: find("columns.end", &c.end)?,
            duration: find("columns.duration", &c.duration)?,
            calling: req("columns.calling_number", &c.calling_number)?,
            called: req("columns.called_number", &c.called_number)?,
            disposition: find("columns.disposition", &c.disposition)?,
            cause: find("columns.cause_code", &c.cause_code)?,
            trunk: find("columns.trunk", &c.trunk)?,
            presentation: find("columns.presentation", &c.presentation)?,
        };
        let words = format
            .disposition_map
            .iter()
            .map(|(k, v)| (k.trim().to_uppercase(), *v))
            .collect();
        Ok(Self {
            encoding: format.encoding,
            delimiter: format.delimiter,
            time,
            unit: format.duration_unit,
            cause: format.cause_kind,
            words,
            withheld: withheld::Rule::new(&format.withheld_words, &format.presentation_restricted),
            cols,
        })
    }

    /// Maps one record.
    pub fn map(&self, rec: &csv::ByteRecord) -> Result<Row, RowError> {
        let c = &self.cols;
        let record_id = self
            .required(rec, c.record_id, Field::RecordId)?
            .into_owned();
        let call_id = self
            .optional(rec, c.call_id, Field::CallId)?
            .map(Cow::into_owned);
        let start_utc = self.time(&self.required(rec, c.start, Field::Start)?, Field::Start)?;
        let answer_utc = self.optional_time(rec, c.answer, Field::Answer)?;
        let end_utc = self.optional_time(rec, c.end, Field::End)?;
        let duration_seconds = match c.duration {
            Some(i) => match self.optional(rec, Some(i), Field::Duration)? {
                Some(cell) => self.duration(&cell)?,
                None => 0,
            },
            None => match (answer_utc, end_utc) {
                (Some(a), Some(e)) => {
                    let ms = (e - a).num_milliseconds();
                    if ms < 0 {
                        return Err(RowError::EndBeforeAnswer);
                    }
                    u64::try_from(ms).map_or(0, |ms| ms.div_ceil(1000))
                }
                _ => 0,
            },
        };
        // Present but possibly empty: an empty calling cell is a withheld caller.
        let calling_raw = self
            .cell(rec, c.calling, Field::CallingNumber)?
            .into_owned();
        let presentation = self.optional(rec, c.presentation, Field::Presentation)?;
        let caller_withheld = self
            .withheld
            .withheld(&calling_raw, presentation.as_deref());
        let called_raw = self
            .required(rec, c.called, Field::CalledNumber)?
            .into_owned();
        let answered = answer_utc.is_some() || duration_seconds > 0;
        let disposition = self.disposition(rec, answered)?;
        let trunk = self
            .optional(rec, c.trunk, Field::Trunk)?
            .map(Cow::into_owned);
        Ok(Row {
            line: 0,
            record_id,
            call_id,
            start_utc,
            answer_utc,
            end_utc,
            duration_seconds,
            calling_raw,
            caller_withheld,
            called_raw,
            disposition,
            trunk,
        })
    }

    /// The whole record as UTF-8 text, for the quarantine file only.
    pub fn raw_text(&self, rec: &csv::ByteRecord) -> String {
        let mut out = String::new();
        for (i, field) in rec.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            out.push_str(&decode(self.encoding, field));
        }
        // The reader splits on LF only, so a CRLF file leaves its CR here.
        let kept = out.trim_end_matches('\r').len();
        out.truncate(kept);
        out
    }

    fn disposition(&self, rec: &csv::ByteRecord, answered: bool) -> Result<Disposition, RowError> {
        if let Some(word) = self.optional(rec, self.cols.disposition, Field::Disposition)? {
            let upper = word.to_uppercase();
            return self
                .words
                .get(&upper)
                .copied()
                .or_else(|| Disposition::from_word(&word))
                .ok_or(RowError::Word);
        }
        let Some(cell) = self.optional(rec, self.cols.cause, Field::CauseCode)? else {
            return Err(RowError::NoOutcome);
        };
        let code: u16 = cell.parse().map_err(|_| RowError::Cause)?;
        match self.cause {
            Some(CauseKind::Sip) => Disposition::from_sip(code),
            Some(CauseKind::Q850) => Disposition::from_q850(code, answered),
            None => None,
        }
        .ok_or(RowError::Cause)
    }

    fn duration(&self, cell: &str) -> Result<u64, RowError> {
        let (whole, frac) = cell.split_once('.').unwrap_or((cell, ""));
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RowError::Duration);
        }
        let whole: u64 = whole.parse().map_err(|_| RowError::Duration)?;
        // Round up any fraction: a 400 ms answered call must not read as 0 s.
        let up = u64::from(frac.bytes().any(|b| b != b'0'));
        let value = whole.checked_add(up).ok_or(RowError::Duration)?;
        Ok(match self.unit {
            DurationUnit::Seconds => value,
            DurationUnit::Millis => {
                // `whole` ms plus a fraction of a ms: ceil to the next second.
                value.div_ceil(1000)
            }
        })
    }

    fn optional_time(
        &self,
        rec: &csv::ByteRecord,
        idx: Option<usize>,
        field: Field,
    ) -> Result<Option<DateTime<Utc>>, RowError> {
        match self.optional(rec, idx, field)? {
            // Epoch exports from older switches write 0 for "never answered".
            Some(cell)
                if cell == "0" && matches!(self.time, Time::EpochSeconds | Time::EpochMillis) =>
            {
                Ok(None)
            }
            Some(cell) => self.time(&cell, field).map(Some),
            None => Ok(None),
        }
    }

    fn time(&self, cell: &str, field: Field) -> Result<DateTime<Utc>, RowError> {
        let bad = RowError::Time(field);
        match &self.time {
            Time::Rfc3339 => DateTime::parse_from_rfc3339(cell)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad),
            Time::EpochSeconds => cell
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or(bad),
            Time::EpochMillis => cell
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis)
                .ok_or(bad),
            Time::Pattern(items, tz) => {
                let mut parsed = Parsed::new();
                chrono::format::parse(&mut parsed, cell, items.iter()).map_err(|_| bad)?;
                let naive = parsed.to_naive_datetime_with_offset(0).map_err(|_| bad)?;
                // In the autumn DST overlap the local time names two instants; the carrier
                // cannot tell us which, so take the earlier. Spring-gap times cannot occur.
                tz.from_local_datetime(&naive)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
                    .ok_or(bad)
            }
        }
    }

    fn cell<'r>(
        &self,
        rec: &'r csv::ByteRecord,
        idx: usize,
        field: Field,
    ) -> Result<Cow<'r, str>, RowError> {
        let bytes = rec.get(idx).ok_or(RowError::Missing(field))?;
        let text = match self.encoding {
            Encoding::Utf8 => {
                let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| RowError::Encoding(field))?)
            }
            Encoding::Latin1 => {
                encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(bytes)
                    .0
            }
        };
        Ok(match text {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
            Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
        })
    }

    fn required<'r>(
        &self,
        rec: &'r csv::ByteRecord,
        idx: usize,
        field: Field,
    ) -> Result<Cow<'r, str>, RowError> {
        let cell = self.cell(rec, idx, field)?;
        if cell.is_empty() {
            return Err(RowError::Empty(field));
        }
        Ok(cell)
    }

    fn optional<'r>(
        &self,
        rec: &'r csv::ByteRecord,
        idx: Option<usize>,
        field: Field,
    ) -> Result<Option<Cow<'r, str>>, RowError> {
        let Some(idx) = idx else { return Ok(None) };
        // A short row lacks trailing optional columns; carriers drop empty trailing fields.
        if idx >= rec.len() {
            return Ok(None);
        }
        let cell = self.cell(rec, idx, field)?;
        Ok((!cell.is_empty()).then_some(cell))
    }
}

/// Decodes a header or raw row for display; invalid UTF-8 is replaced, not rejected.
fn decode(encoding: Encoding, bytes: &[u8]) -> Cow<'_, str> {
    match encoding {
        Encoding::Utf8 => {
            String::from_utf8_lossy(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
        }
        Encoding::Latin1 => {
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cdr::format::builtin_presets;

    fn rec(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    fn sip() -> Mapper {
        let f = &builtin_presets().unwrap()["sipcarrier-csv"];
        let header = rec(&[
            "cdr_id",
            "call_id",
            "setup_time",
            "connect_time",
            "disconnect_time",
            "duration_ms",
            "from_number",
            "to_number",
            "sip_status",
            "trunk_group",
        ]);
        Mapper::new(f, Some(&header)).unwrap()
    }

    #[test]
    fn sip_row_maps_all_fields() {
        let row = sip()
            .map(&rec(&[
                "r1",
                "abc@host",
                "2024-05-02T08:00:00Z",
                "2024-05-02T08:00:05Z",
                "2024-05-02T08:01:05.400Z",
                "60400",
                "+4930555001",
                "+4930555002",
                "200",
                "tg1",
            ]))
            .unwrap();
        assert_eq!(row.record_id, "r1");
        assert_eq!(row.duration_seconds, 61);
        assert_eq!(row.disposition, Disposition::Answered);
        assert_eq!(row.trunk.as_deref(), Some("tg1"));
        assert_eq!(row.start_utc.to_rfc3339(), "2024-05-02T08:00:00+00:00");
    }

    #[test]
    fn debug_redacts_numbers_and_call_id() {
        let row = sip()
            .map(&rec(&[
                "r1",
                "secret-callid",
                "2024-05-02T08:00:00Z",
                "",
                "",
                "0",
                "+4930555001",
                "+4930555002",
                "486",
                "",
            ]))
            .unwrap();
        let dbg = format!("{row:?}");
        assert!(!dbg.contains("555001") && !dbg.contains("555002"));
        assert!(!dbg.contains("secret-callid"));
        assert_eq!(row.disposition, Disposition::Busy);
        assert_eq!(row.trunk, None);
    }

    #[test]
    fn sip_table() {
        let cases = [
            (200, Some(Disposition::Answered)),
            (486, Some(Disposition::Busy)),
            (600, Some(Disposition::Busy)),
            (408, Some(Disposition::NoAnswer)),
            (480, Some(Disposition::NoAnswer)),
            (487, Some(Disposition::Cancelled)),
            (503, Some(Disposition::Failed)),
            (404, Some(Disposition::Failed)),
            (180, None),
            (700, None),
        ];
        for (code, want) in cases {
            assert_eq!(Disposition::from_sip(code), want, "code {code}");
        }
    }

    #[test]
    fn q850_table_uses_answer_evidence() {
        assert_eq!(
            Disposition::from_q850(16, true),
            Some(Disposition::Answered)
        );
        assert_eq!(
            Disposition::from_q850(16, false),
            Some(Disposition::Cancelled)
        );
        assert_eq!(Disposition::from_q850(17, false), Some(Disposition::Busy));
        assert_eq!(
            Disposition::from_q850(18, false),
            Some(Disposition::NoAnswer)
        );
        assert_eq!(
            Disposition::from_q850(19, false),
            Some(Disposition::NoAnswer)
        );
        assert_eq!(
            Disposition::from_q850(31, true),
            Some(Disposition::Answered)
        );
        assert_eq!(
            Disposition::from_q850(31, false),
            Some(Disposition::NoAnswer)
        );
        assert_eq!(Disposition::from_q850(34, false), Some(Disposition::Failed));
        assert_eq!(Disposition::from_q850(0, false), None);
        assert_eq!(Disposition::from_q850(128, false), None);
    }

    #[test]
    fn bad_time_reason_names_column_not_content() {
        let err = sip()
            .map(&rec(&[
                "r1",
                "",
                "yesterday",
                "",
                "",
                "0",
                "+4930555001",
                "+4930555002",
                "200",
                "",
            ]))
            .unwrap_err();
        assert_eq!(err.to_string(), "bad time in column start");
    }

    #[test]
    fn short_row_reports_missing_required_column() {
        let err = sip()
            .map(&rec(&["r1", "", "2024-05-02T08:00:00Z"]))
            .unwrap_err();
        assert_eq!(err, RowError::Missing(Field::CallingNumber));
        assert_eq!(err.to_string(), "missing column calling_number");
    }

    /// The telekom-style preset's header as the carrier writes it: Latin-1 bytes.
    fn telekom_header() -> csv::ByteRecord {
        let names = [
            "Verbindungs-ID",
            "Beginn",
            "Annahme",
            "Ende",
            "Dauer",
            "Rufnummer A",
            "Rufnummer B",
            "Auslösegrund",
            "Bündel",
        ];
        csv::ByteRecord::from(
            names
                .map(|n| encoding_rs::WINDOWS_1252.encode(n).0.into_owned())
                .to_vec(),
        )
    }

    #[test]
    fn berlin_local_time_converts_to_utc_including_dst() {
        let f = &builtin_presets().unwrap()["telekom-style"];
        let header = telekom_header();
        let m = Mapper::new(f, Some(&header)).unwrap();
        let summer = m
            .map(&rec(&[
                "1",
                "02.05.2024 10:00:00",
                "",
                "02.05.2024 10:00:20",
                "0",
                "0305550",
                "0305551",
                "16",
                "",
            ]))
            .unwrap();
        assert_eq!(summer.start_utc.to_rfc3339(), "2024-05-02T08:00:00+00:00");
        assert_eq!(summer.disposition, Disposition::Cancelled);
        let winter = m
            .map(&rec(&[
                "2",
                "02.01.2024 10:00:00",
                "02.01.2024 10:00:03",
                "",
                "12",
                "0305550",
                "0305551",
                "16",
                "",
            ]))
            .unwrap();
        assert_eq!(winter.start_utc.to_rfc3339(), "2024-01-02T09:00:00+00:00");
        assert_eq!(winter.disposition, Disposition::Answered);
    }

    #[test]
    fn header_without_configured_column_is_a_format_error() {
        let f = &builtin_presets().unwrap()["sipcarrier-csv"];
        let err = Mapper::new(f, Some(&rec(&["cdr_id", "setup_time"])))
            .err()
            .unwrap();
        assert_eq!(err, FormatError::NotInHeader("columns.call_id"));
    }

    #[test]
    fn legacy_words_and_epoch_zero_mean_unanswered() {
        let f = &builtin_presets().unwrap()["legacy-noheader"];
        let m = Mapper::new(f, None).unwrap();
        let row = m
            .map(&rec(&[
                "9",
                "1714636800",
                "0",
                "1714636830",
                "1",
                "2",
                "noanswer",
                "t",
            ]))
            .unwrap();
        assert_eq!(row.disposition, Disposition::NoAnswer);
        assert_eq!(row.answer_utc, None);
        assert_eq!(row.duration_seconds, 0);
        let err = m
            .map(&rec(&["9", "1714636800", "", "", "1", "2", "MAYBE", "t"]))
            .unwrap_err();
        assert_eq!(err, RowError::Word);
        let err = m
            .map(&rec(&[
                "9",
                "1714636800",
                "1714636900",
                "1714636850",
                "1",
                "2",
                "ANSWERED",
            ]))
            .unwrap_err();
        assert_eq!(err, RowError::EndBeforeAnswer);
    }

    /// A header format with a presentation column, as a SIP carrier's portal exports it.
    fn with_presentation(extra: &str) -> Mapper {
        let f: Format = toml::from_str(&format!(
            r#"
            delimiter = ","
            has_header = true
            time_format = "rfc3339"
            cause_kind = "sip"
            {extra}
            [columns]
            record_id = "id"
            start = "start"
            duration = "dur"
            calling_number = "from"
            called_number = "to"
            cause_code = "status"
            presentation = "clir"
            "#
        ))
        .unwrap();
        let header = rec(&["id", "start", "dur", "from", "to", "status", "clir"]);
        Mapper::new(&f, Some(&header)).unwrap()
    }

    fn clir_row(m: &Mapper, from: &str, clir: Option<&str>) -> Row {
        let mut cells = vec![
            "w1",
            "2024-05-02T08:00:00Z",
            "3",
            from,
            "+4930555002",
            "200",
        ];
        cells.extend(clir);
        m.map(&rec(&cells)).unwrap()
    }

    #[test]
    fn presentation_column_marks_each_restricted_value_withheld() {
        let m = with_presentation("");
        for value in crate::cdr::format::DEFAULT_PRESENTATION_RESTRICTED {
            for written in [value.to_owned(), format!(" {} ", value.to_uppercase())] {
                let row = clir_row(&m, "+4917612345678", Some(&written));
                assert!(row.caller_withheld, "{written:?}");
                assert_eq!(
                    row.calling_raw, "+4917612345678",
                    "the raw number stays for the quarantine"
                );
            }
        }
        for value in ["0", "n", "no", "false", "allowed", ""] {
            assert!(
                !clir_row(&m, "+4917612345678", Some(value)).caller_withheld,
                "{value:?}"
            );
        }
        // A row short of the trailing presentation cell says nothing about CLIR.
        assert!(!clir_row(&m, "+4917612345678", None).caller_withheld);
    }

    #[test]
    fn custom_presentation_values_replace_the_defaults() {
        let m = with_presentation(r#"presentation_restricted = ["J", "ja"]"#);
        assert!(clir_row(&m, "+4917612345678", Some("j")).caller_withheld);
        assert!(clir_row(&m, "+4917612345678", Some("JA")).caller_withheld);
        assert!(!clir_row(&m, "+4917612345678", Some("1")).caller_withheld);
    }

    #[test]
    fn each_default_word_in_the_calling_cell_marks_the_caller_withheld() {
        let m = sip();
        for word in crate::cdr::format::DEFAULT_WITHHELD_WORDS {
            for cell in [
                word.to_owned(),
                word.to_uppercase(),
                format!("{word} +4917612345678"),
                format!("+4917612345678 ({})", word.to_uppercase()),
            ] {
                let row = m
                    .map(&rec(&[
                        "r1",
                        "",
                        "2024-05-02T08:00:00Z",
                        "",
                        "",
                        "0",
                        &cell,
                        "+4930555002",
                        "486",
                        "",
                    ]))
                    .unwrap();
                assert!(row.caller_withheld, "{cell:?}");
                assert_eq!(row.calling_raw, cell.trim());
            }
        }
        let row = m
            .map(&rec(&[
                "r1",
                "",
                "2024-05-02T08:00:00Z",
                "",
                "",
                "0",
                "+4917612345678",
                "+4930555002",
                "486",
                "",
            ]))
            .unwrap();
        assert!(!row.caller_withheld, "a plain number is presented");
    }

    #[test]
    fn custom_withheld_words_replace_the_defaults_in_latin1_exports() {
        let mut f = builtin_presets().unwrap()["telekom-style"].clone();
        f.withheld_words = vec!["Unterdrückt".into(), "keine Rufnummer".into()];
        let latin1 = |s: &str| encoding_rs::WINDOWS_1252.encode(s).0.into_owned();
        let header = telekom_header();
        let m = Mapper::new(&f, Some(&header)).unwrap();
        let map = |calling: &str| {
            let cells = [
                "1",
                "02.05.2024 10:00:00",
                "",
                "02.05.2024 10:00:20",
                "0",
                calling,
                "0305551",
                "16",
                "",
            ];
            m.map(&csv::ByteRecord::from(cells.map(latin1).to_vec()))
                .unwrap()
        };
        assert!(map("UNTERDRÜCKT").caller_withheld);
        assert!(map("030 5550 (keine Rufnummer)").caller_withheld);
        assert!(
            !map("anonymous").caller_withheld,
            "the defaults are replaced (the completer still withholds a non-number)"
        );
        assert!(!map("030 55505146").caller_withheld);
    }

    #[test]
    fn empty_calling_cell_is_a_withheld_caller_not_a_bad_row() {
        let row = sip()
            .map(&rec(&[
                "r1",
                "",
                "2024-05-02T08:00:00Z",
                "",
                "",
                "0",
                "  ",
                "+4930555002",
                "486",
                "",
            ]))
            .unwrap();
        assert!(row.caller_withheld);
        assert_eq!(row.calling_raw, "");
        let dbg = format!("{row:?}");
        assert!(dbg.contains("caller_withheld: true"), "{dbg}");
    }

    #[test]
    fn millisecond_durations_round_up() {
        let m = sip();
        assert_eq!(m.duration("400").unwrap(), 1);
        assert_eq!(m.duration("1000").unwrap(), 1);
        assert_eq!(m.duration("1001").unwrap(), 2);
        assert_eq!(m.duration("0").unwrap(), 0);
        assert_eq!(m.duration("-5"), Err(RowError::Duration));
        assert_eq!(m.duration("1.x"), Err(RowError::Duration));
    }
}
