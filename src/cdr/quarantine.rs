//! Quarantine for CDR rows that could not be mapped: `<data_dir>/cdr/quarantine/<date>.jsonl`,
//! one JSON object `{file, line, reason, raw}` per line.
//!
//! The raw row is the only place raw caller numbers rest on local disk, so the directory is
//! 0700, the files 0600, and `purge` deletes whole days past retention. Days are UTC dates of
//! the time the row was quarantined.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::data_dir::DataDir;

/// One quarantined row. The raw row is written to the quarantine on purpose; `Debug` gives
/// only its length so it cannot reach a log line.
#[derive(Clone, Serialize)]
pub struct Entry<'a> {
    pub file: &'a str,
    pub line: u64,
    pub reason: &'a str,
    pub raw: &'a str,
}

impl std::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("file", &self.file)
            .field("line", &self.line)
            .field("reason", &self.reason)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("cannot write the CDR quarantine")]
    Io(#[from] io::Error),
    #[error("cannot encode a CDR quarantine entry")]
    Encode(#[from] serde_json::Error),
}

/// The quarantine directory with the day file currently open for appending.
pub struct Quarantine {
    dir: PathBuf,
    day: Option<(NaiveDate, BufWriter<File>)>,
}

impl Quarantine {
    /// Opens (creating, mode 0700) `<data_dir>/cdr/quarantine/`.
    pub fn open(data_dir: &Path) -> Result<Self, QuarantineError> {
        let dir = DataDir::new(data_dir).cdr_quarantine();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self { dir, day: None })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one entry to the file of `now`'s day (buffered until `sync`).
    pub fn append(&mut self, entry: &Entry<'_>, now: DateTime<Utc>) -> Result<(), QuarantineError> {
        let date = now.date_naive();
        if self.day.as_ref().map(|(d, _)| *d) != Some(date) {
            self.sync()?;
            let path = self.dir.join(format!("{}.jsonl", date.format("%Y-%m-%d")));
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)?;
            self.day = Some((date, BufWriter::new(file)));
        }
        if let Some((_, w)) = &mut self.day {
            serde_json::to_writer(&mut *w, entry)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Makes every appended entry durable.
    pub fn sync(&mut self) -> Result<(), QuarantineError> {
        if let Some((_, w)) = &mut self.day {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Deletes day files dated before `cutoff`'s day; returns how many.
    pub fn purge(&mut self, cutoff: DateTime<Utc>) -> Result<usize, QuarantineError> {
        let keep_from = cutoff.date_naive();
        if self.day.as_ref().is_some_and(|(d, _)| *d < keep_from) {
            self.sync()?;
            self.day = None;
        }
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if expired(name, keep_from) {
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Whether a quarantine file name is a day before `keep_from`; other names are left alone.
fn expired(name: &str, keep_from: NaiveDate) -> bool {
    name.strip_suffix(".jsonl")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .is_some_and(|d| d < keep_from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(2024, 5, day)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
    }

    #[test]
    fn entries_land_in_private_day_files_as_json_lines() {
        let data = tempfile::tempdir().unwrap();
        let mut q = Quarantine::open(data.path()).unwrap();
        let e = Entry {
            file: "a.csv",
            line: 7,
            reason: "bad time in column start",
            raw: "1;x;y",
        };
        q.append(&e, at(2)).unwrap();
        q.append(&e, at(2)).unwrap();
        q.sync().unwrap();
        let path = q.dir().join("2024-05-02.jsonl");
        let text = fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["line"], 7);
        assert_eq!(first["reason"], "bad time in column start");
        assert_eq!(text.lines().count(), 2);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(q.dir()).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn purge_deletes_only_days_before_cutoff() {
        let data = tempfile::tempdir().unwrap();
        let mut q = Quarantine::open(data.path()).unwrap();
        let e = Entry {
            file: "a",
            line: 1,
            reason: "r",
            raw: "",
        };
        for day in [1, 2, 3] {
            q.append(&e, at(day)).unwrap();
        }
        fs::write(q.dir().join("notes.txt"), b"keep").unwrap();
        assert_eq!(q.purge(at(3)).unwrap(), 2);
        let mut left: Vec<_> = fs::read_dir(q.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["2024-05-03.jsonl", "notes.txt"]);
    }
}
