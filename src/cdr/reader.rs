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

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use csv::ByteRecord;

use super::format::{Format, FormatError};
use super::row::{Mapper, Row, RowError};

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
    #[error("the CDR file does not fit its format: {0}")]
    Format(#[from] FormatError),
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A CSV stream over one file.
pub struct Reader {
    csv: csv::Reader<Box<dyn Read + Send>>,
    /// `None` for an empty file (no header to resolve columns against).
    mapper: Option<Mapper>,
    base_offset: u64,
    base_line: u64,
    skip_until: u64,
    record: ByteRecord,
}

impl Reader {
    /// Opens `path` (gzip detected by its magic bytes) and positions after `resume`.
    pub fn open(path: &Path, format: &Format, resume: Option<Resume>) -> Result<Self, ReadError> {
        format.validate()?;
        let resume = resume.filter(|r| r.offset > 0);
        let gzip = is_gzip(path)?;
        let (stream, base): (Box<dyn Read + Send>, Option<Resume>) = match (gzip, resume) {
            (true, _) => (
                Box::new(flate2::read::MultiGzDecoder::new(File::open(path)?)),
                None,
            ),
            (false, Some(r)) => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(r.offset))?;
                (Box::new(file), Some(r))
            }
            (false, None) => (Box::new(File::open(path)?), None),
        };
        let mut csv = builder(format).from_reader(stream);
        let mut record = ByteRecord::new();
        let mapper = match (format.has_header, base) {
            (false, _) => Some(Mapper::new(format, None)?),
            (true, None) => {
                if csv.read_byte_record(&mut record)? {
                    Some(Mapper::new(format, Some(&record))?)
                } else {
                    None
                }
            }
            (true, Some(_)) => {
                let mut head = builder(format).from_reader(File::open(path)?);
                if head.read_byte_record(&mut record)? {
                    Some(Mapper::new(format, Some(&record))?)
                } else {
                    None
                }
            }
        };
        let (base_offset, base_line) = base.map_or((0, 1), |r| (r.offset, r.line.max(1)));
        Ok(Self {
            csv,
            mapper,
            base_offset,
            base_line,
            skip_until: if gzip {
                resume.map_or(0, |r| r.offset)
            } else {
                0
            },
            record,
        })
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        let Some(mapper) = &self.mapper else {
            return Ok(None);
        };
        loop {
            if !self.csv.read_byte_record(&mut self.record)? {
                return Ok(None);
            }
            let after = self.csv.position();
            let offset = self.base_offset + after.byte();
            if offset <= self.skip_until {
                continue;
            }
            let start_line = self
                .record
                .position()
                .map_or(after.line(), csv::Position::line);
            return Ok(Some(Item {
                line: self.base_line + start_line - 1,
                offset,
                next_line: self.base_line + after.line() - 1,
                result: mapper.map(&self.record),
            }));
        }
    }

    /// The last record read, as UTF-8 text, for the quarantine file.
    pub fn raw_text(&self) -> String {
        self.mapper
            .as_ref()
            .map(|m| m.raw_text(&self.record))
            .unwrap_or_default()
    }
}

impl Iterator for Reader {
    type Item = Result<Item, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

fn builder(format: &Format) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    // `validate` has checked both are ASCII, so the casts cannot truncate.
    b.delimiter(ascii_byte(format.delimiter))
        .quote(ascii_byte(format.quote))
        .has_headers(false)
        // Only LF ends a record: the default CRLF handling reports a CRLF record's end
        // before its LF, which skews offsets and line numbers by one. A CR before the LF
        // stays in the last cell, where the mapper trims it.
        .terminator(csv::Terminator::Any(b'\n'))
        // Short rows are quarantined per row instead of failing the file.
        .flexible(true)
        .buffer_capacity(64 * 1024);
    b
}

fn ascii_byte(c: char) -> u8 {
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
