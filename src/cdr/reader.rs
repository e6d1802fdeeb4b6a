//! Streaming CDR file reader: plain or gzip (RFC 1952, multi-member) CSV (RFC 4180) in, mapped
//! rows out, each with the line it starts on and the byte offset just after it.
//!
//! Offsets are positions in the CSV byte stream: the file itself for plain files, the
//! decompressed stream for gzip. Latin-1 is decoded per field by the [`Mapper`], not on the
//! stream, so delimiters, quotes and offsets stay in the file's own bytes (Windows-1252 is
//! ASCII-compatible) and a plain Latin-1 file can be resumed by seeking.
//!
//! Resuming from a checkpoint: a plain file is reopened and seeked to the offset (the header
//! is read first from a separate handle). A gzip stream cannot be seeked, so it is re-read
//! from the start and rows ending at or before the offset are skipped unmapped; that costs
//! one decompress-and-split pass over the done part, which only happens after a crash or a
//! sink failure.
//!
//! Every record is cut by `split` under the feed's limits before the csv crate parses it, and
//! a gzip stream is bounded by `gzip`: a record or stream that breaks a bound becomes an item
//! with that reason (quarantined), never an unbounded allocation.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use csv::ByteRecord;

use super::format::{Format, FormatError};
use super::gzip::{self, Bounded};
use super::limits::{Bound, Limits};
use super::row::{Mapper, Row, RowError};
use super::split::{Split, Splitter};

/// Where to continue: the position of the next unread record, as committed before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    /// 1-based line on which the next record starts.
    pub line: u64,
}

/// One record read.
#[derive(Debug)]
pub struct Item {
    /// 1-based line on which the record starts.
    pub line: u64,
    /// Byte offset just after the record: commit this to resume after it.
    pub offset: u64,
    /// Line on which the next record starts (committed with `offset`).
    pub next_line: u64,
    pub result: Result<Row, RowError>,
}

impl Item {
    /// The checkpoint position after this record.
    pub fn resume(&self) -> Resume {
        Resume {
            offset: self.offset,
            line: self.next_line,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the CDR file")]
    Io(#[from] io::Error),
    #[error("the CDR file is not readable CSV")]
    Csv(#[from] csv::Error),
    /// Shown in the message, not as `source`: our own words (column names), and CDR logs print
    /// messages only (a `csv::Error` source could carry field text), so the reason must stay in
    /// the message, and printing it as source too would repeat it under `{:#}`.
    #[error("the CDR file does not fit its format: {0}")]
    Format(FormatError),
    #[error("the CDR file's header breaks a limit: {0}")]
    Header(Bound),
}

impl From<FormatError> for ReadError {
    fn from(err: FormatError) -> Self {
        Self::Format(err)
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The bytes under the CSV: the file itself, or its bounded gzip stream.
enum Source {
    Plain(File),
    Gzip(Box<Bounded<File>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(f) => f.read(buf),
            Self::Gzip(g) => g.read(buf),
        }
    }
}

/// Reading options besides the format.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub limits: Limits,
    /// The file is known to be complete (a done marker, an import, a file quiet long
    /// enough): a last line without LF is a record. Otherwise it is held back. Gzip streams
    /// carry their own end, so for them this is always true.
    pub final_tail: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            final_tail: true,
        }
    }
}

/// A CSV stream over one file.
pub struct Reader {
    split: Splitter<BufReader<Source>>,
    /// `None` for an empty file (no header to resolve columns against).
    mapper: Option<Mapper>,
    parser: RecordParser,
    limits: Limits,
    skip_until: u64,
    record: ByteRecord,
    /// The last record's raw text when it was cut by a bound (no `record` to render).
    cut_raw: Option<String>,
    /// A gzip bound stopped the stream: nothing more is read.
    stopped: bool,
    header_held: bool,
}

impl Reader {
    /// Opens `path` (gzip detected by its magic bytes) and positions after `resume`.
    pub fn open(path: &Path, format: &Format, resume: Option<Resume>) -> Result<Self, ReadError> {
        Self::open_with(path, format, resume, Options::default())
    }

    /// [`Reader::open`] with limits and the tail rule.
    pub fn open_with(
        path: &Path,
        format: &Format,
        resume: Option<Resume>,
        options: Options,
    ) -> Result<Self, ReadError> {
        format.validate()?;
        let limits = options.limits;
        let resume = resume.filter(|r| r.offset > 0);
        let gzip = is_gzip(path)?;
        let final_tail = options.final_tail || gzip;
        let (delimiter, quote) = (ascii_byte(format.delimiter), ascii_byte(format.quote));
        let splitter = |source: Source, at: Option<Resume>| {
            let (offset, line) = at.map_or((0, 1), |r| (r.offset, r.line.max(1)));
            Splitter::new(
                BufReader::with_capacity(64 * 1024, source),
                limits,
                delimiter,
                quote,
                offset,
                line,
                final_tail,
            )
        };
        let (mut split, base) = match (gzip, resume) {
            (true, _) => (
                splitter(
                    Source::Gzip(Box::new(Bounded::new(File::open(path)?, &limits))),
                    None,
                ),
                None,
            ),
            (false, Some(r)) => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(r.offset))?;
                (splitter(Source::Plain(file), Some(r)), Some(r))
            }
            (false, None) => (splitter(Source::Plain(File::open(path)?), None), None),
        };
        let mut record = ByteRecord::new();
        let mut parser = RecordParser::new(delimiter, quote);
        let mut header_held = false;
        let mapper = if format.has_header {
            let mut head = match base {
                None => None,
                Some(_) => Some(splitter(Source::Plain(File::open(path)?), None)),
            };
            let from = head.as_mut().unwrap_or(&mut split);
            let header = next_record(from, &mut parser, &mut record).map_err(|e| match e {
                // A gzip bomb in the header line is refused like one in any other line.
                ReadError::Io(io) => {
                    gzip::bound_of(&io).map_or(ReadError::Io(io), ReadError::Header)
                }
                other => other,
            })?;
            header_held = from.held_back();
            match header {
                Some(Ok(())) => Some(Mapper::new(format, Some(&record))?),
                Some(Err(bound)) => return Err(ReadError::Header(bound)),
                None => None,
            }
        } else {
            Some(Mapper::new(format, None)?)
        };
        Ok(Self {
            split,
            mapper,
            parser,
            limits,
            skip_until: if gzip {
                resume.map_or(0, |r| r.offset)
            } else {
                0
            },
            record,
            cut_raw: None,
            stopped: false,
            header_held,
        })
    }

    /// Whether the file ended in a line without LF that was not read (see [`Options`]).
    pub fn held_back(&self) -> bool {
        self.header_held || self.split.held_back()
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        let Some(mapper) = &self.mapper else {
            return Ok(None);
        };
        if self.stopped {
            return Ok(None);
        }
        loop {
            let split = match self.split.next_split() {
                Ok(Some(split)) => split,
                Ok(None) => return Ok(None),
                Err(e) => {
                    let Some(bound) = gzip::bound_of(&e) else {
                        return Err(e.into());
                    };
                    // The rest of the stream is refused as one quarantined record.
                    self.stopped = true;
                    self.cut_raw = Some(String::new());
                    let line = self.split.line();
                    return Ok(Some(Item {
                        line,
                        offset: self.split.offset(),
                        next_line: line,
                        result: Err(bound.into()),
                    }));
                }
            };
            if split.end <= self.skip_until {
                continue;
            }
            let Split {
                line,
                end,
                next_line,
                record,
            } = split;
            let result = match record {
                Ok(bytes) => {
                    if !self.parser.parse(&bytes, &mut self.record) {
                        // A blank line: no record, as the csv crate reads it.
                        continue;
                    }
                    self.cut_raw = None;
                    mapper.map(&self.record)
                }
                Err((bound, raw)) => {
                    self.cut_raw = Some(mapper.raw_text(&ByteRecord::from(vec![raw])));
                    Err(bound.into())
                }
            };
            return Ok(Some(Item {
                line,
                offset: end,
                next_line,
                result,
            }));
        }
    }

    /// The last record read, as UTF-8 text, for the quarantine file.
    pub fn raw_text(&self) -> String {
        if let Some(raw) = &self.cut_raw {
            return raw.clone();
        }
        self.mapper
            .as_ref()
            .map(|m| m.raw_text(&self.record))
            .unwrap_or_default()
    }

    /// The limits this file is read under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Iterator for Reader {
    type Item = Result<Item, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// The next record of `split` parsed into `record`; `Some(Err)` when a bound cut it.
fn next_record<R: io::BufRead>(
    split: &mut Splitter<R>,
    parser: &mut RecordParser,
    record: &mut ByteRecord,
) -> Result<Option<Result<(), Bound>>, ReadError> {
    while let Some(s) = split.next_split()? {
        match s.record {
            Ok(bytes) => {
                if parser.parse(&bytes, record) {
                    return Ok(Some(Ok(())));
                }
            }
            Err((bound, _)) => return Ok(Some(Err(bound))),
        }
    }
    Ok(None)
}

/// Parses one record's bytes (already cut and bounded) into fields. Built once per file: a
/// `csv` reader per record spent half of ingest building its state machine.
struct RecordParser {
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl RecordParser {
    fn new(delimiter: u8, quote: u8) -> Self {
        Self {
            core: csv_core::ReaderBuilder::new()
                .delimiter(delimiter)
                .quote(quote)
                // The splitter cut at an LF outside quotes; any CR before it stays in the last
                // cell, where the mapper trims it, exactly as with CRLF files before.
                .terminator(csv_core::Terminator::Any(b'\n'))
                .build(),
            out: vec![0; 1024],
            ends: vec![0; 64],
        }
    }

    /// `bytes` into `record`; false for a blank line (no record, as the csv crate reads it).
    /// Short and long rows are kept as they are: the mapper quarantines them per row.
    fn parse(&mut self, bytes: &[u8], record: &mut ByteRecord) -> bool {
        use csv_core::ReadRecordResult;
        self.core.reset();
        let (mut input, mut out_len, mut ends_len) = (bytes, 0, 0);
        loop {
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[out_len..], &mut self.ends[ends_len..]);
            input = &input[nin..];
            out_len += nout;
            ends_len += nend;
            match result {
                // All of the record's bytes are in; the empty input that follows ends it.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let grown = self.out.len() * 2;
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => break,
                ReadRecordResult::End => return false,
            }
        }
        record.clear();
        let mut start = 0;
        for &end in &self.ends[..ends_len] {
            record.push_field(&self.out[start..end]);
            start = end;
        }
        true
    }
}

fn ascii_byte(c: char) -> u8 {
    // `validate` has checked both are ASCII, so the cast cannot truncate.
    u8::try_from(c).unwrap_or(b',')
}

fn is_gzip(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let mut file = File::open(path)?;
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    Ok(magic == GZIP_MAGIC)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::cdr::format::builtin_presets;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cdr")
            .join(name)
    }

    fn all(r: Reader) -> Vec<Item> {
        r.map(Result::unwrap).collect()
    }

    #[test]
    fn gzip_and_plain_sample_yield_the_same_rows() {
        let f = &builtin_presets().unwrap()["sipcarrier-csv"];
        let plain = all(Reader::open(&fixture("sipcarrier-sample.csv"), f, None).unwrap());
        let gz = all(Reader::open(&fixture("sipcarrier-sample.csv.gz"), f, None).unwrap());
        assert!(plain.len() >= 10);
        assert_eq!(plain.len(), gz.len());
        for (a, b) in plain.iter().zip(&gz) {
            assert_eq!(a.result, b.result);
            assert_eq!((a.line, a.offset), (b.line, b.offset));
        }
        assert_eq!(plain[0].line, 2);
    }

    #[test]
    fn resume_from_any_row_yields_the_remaining_rows_with_right_lines() {
        for name in ["sipcarrier-sample.csv", "sipcarrier-sample.csv.gz"] {
            let f = &builtin_presets().unwrap()["sipcarrier-csv"];
            let full = all(Reader::open(&fixture(name), f, None).unwrap());
            for cut in [0, 3, full.len() - 1] {
                let resume = full[cut].resume();
                let rest = all(Reader::open(&fixture(name), f, Some(resume)).unwrap());
                assert_eq!(rest.len(), full.len() - cut - 1, "{name} cut {cut}");
                for (a, b) in full[cut + 1..].iter().zip(&rest) {
                    assert_eq!((a.line, a.offset), (b.line, b.offset));
                    assert_eq!(a.result, b.result);
                }
            }
        }
    }

    #[test]
    fn quoted_newline_keeps_line_numbers_physical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.csv");
        let mut file = File::create(&path).unwrap();
        file.write_all(
            b"9|1714636800||1714636830|1|2|BUSY|\"trunk\nA\"\n\
              10|1714636800||1714636830|1|2|BUSY|t\n",
        )
        .unwrap();
        let f = &builtin_presets().unwrap()["legacy-noheader"];
        let items = all(Reader::open(&path, f, None).unwrap());
        assert_eq!(items[0].line, 1);
        assert_eq!(items[1].line, 3);
        assert_eq!(
            items[0].result.as_ref().unwrap().trunk.as_deref(),
            Some("trunk\nA")
        );
    }

    #[test]
    fn empty_file_yields_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.csv");
        File::create(&path).unwrap();
        let f = &builtin_presets().unwrap()["sipcarrier-csv"];
        assert_eq!(all(Reader::open(&path, f, None).unwrap()).len(), 0);
    }
}
