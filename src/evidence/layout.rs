//! Where the evidence files live (`<data_dir>/evidence/`) and how a day is named; the one
//! place that knows the file names.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::data_dir::DataDir;

use super::EvidenceError;

/// The evidence directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout under `data_dir`; touches nothing.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: DataDir::new(data_dir).evidence(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory 0700 if needed; refuses one that group or others can enter,
    /// because the signing key lives in it.
    pub fn create(&self) -> Result<(), EvidenceError> {
        let dir_err = |source| EvidenceError::Dir {
            path: self.dir.clone(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(dir_err)?;
        let meta = fs::metadata(&self.dir).map_err(dir_err)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(EvidenceError::DirPermissions {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    pub fn day_file(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!("{}.jsonl", day_name(day)))
    }

    pub fn seal_name(day: NaiveDate) -> String {
        format!("{}.seal", day_name(day))
    }

    pub fn seal_file(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(Self::seal_name(day))
    }

    pub fn signing_key(&self) -> PathBuf {
        self.dir.join(Self::SIGNING_KEY)
    }

    pub const SIGNING_KEY: &str = "signing.key";

    pub fn public_key(&self) -> PathBuf {
        self.dir.join(Self::PUBLIC_KEY)
    }

    pub const PUBLIC_KEY: &str = "signing.pub";

    /// Deletes every day (its file and seal) before `keep_from`; returns how many days went.
    /// Storage limitation: the lines carry no caller or call identifier, but event ids join
    /// them to events, so they do not stay forever either.
    pub fn purge(&self, keep_from: NaiveDate) -> Result<usize, EvidenceError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(EvidenceError::Dir {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut days = std::collections::BTreeSet::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stem = name
                .strip_suffix(".jsonl")
                .or_else(|| name.strip_suffix(".seal"));
            if let Some(day) = stem.and_then(parse_day).filter(|d| *d < keep_from) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|source| EvidenceError::Io { path, source })?;
                days.insert(day);
            }
        }
        Ok(days.len())
    }
}

/// `YYYY-MM-DD`.
pub fn day_name(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// A day written exactly as `day_name` writes it (no other spellings, so one day has one file).
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    (day_name(day) == text).then_some(day)
}

/// The file's bytes, or `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, EvidenceError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EvidenceError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn purge_removes_whole_days_before_the_cutoff_and_keeps_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = super::Layout::new(tmp.path());
        layout.create().unwrap();
        let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        for d in [1, 2, 3] {
            std::fs::write(layout.day_file(day(d)), b"x\n").unwrap();
            std::fs::write(layout.seal_file(day(d)), b"{}").unwrap();
        }
        std::fs::write(layout.signing_key(), [0u8; 32]).unwrap();
        assert_eq!(layout.purge(day(3)).unwrap(), 2);
        let mut left: Vec<_> = std::fs::read_dir(layout.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["2026-11-03.jsonl", "2026-11-03.seal", "signing.key"]);
    }

    use super::*;

    #[test]
    fn days_have_one_spelling() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
        assert_eq!(parse_day("2026-03-07"), Some(day));
        for other in [
            "2026-3-7",
            "2026-03-07 ",
            "20260307",
            "2026-02-30",
            "../etc",
        ] {
            assert_eq!(parse_day(other), None, "{other}");
        }
        assert!(
            Layout::new(Path::new("/var/lib/x"))
                .day_file(day)
                .ends_with("evidence/2026-03-07.jsonl")
        );
    }

    #[test]
    fn the_directory_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        layout.create().unwrap();
        let mode = fs::metadata(layout.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(layout.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            layout.create(),
            Err(EvidenceError::DirPermissions { .. })
        ));
    }
}
