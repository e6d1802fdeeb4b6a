//! Segment files: `<first sequence, 20 digits>.jsonl`, so that lexical order is log order and
//! a file name alone tells which sequence numbers it starts with.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Error;

const EXT: &str = ".jsonl";

/// Mode of every file we create: the service user writes, an ops group may read (`events tail`).
pub(super) const FILE_MODE: u32 = 0o640;
/// Mode of the directories we create.
pub(super) const DIR_MODE: u32 = 0o750;

/// The file name of the segment whose first record has sequence `base`.
pub(super) fn name(base: u64) -> String {
    format!("{base:020}{EXT}")
}

/// The base sequence of a segment file name, or `None` for any other file.
pub(super) fn parse(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXT)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Base sequences of all segments in `dir`, ascending. Other files are ignored.
pub(super) fn list(dir: &Path) -> Result<Vec<u64>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", ".", e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", ".", e))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Creates a new, empty segment for appending; fails if it already exists.
pub(super) fn create(dir: &Path, base: u64) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(dir.join(name(base)))
}

/// Opens an existing segment for appending (recovery continues the last one).
pub(super) fn reopen(dir: &Path, base: u64) -> io::Result<File> {
    OpenOptions::new().append(true).open(dir.join(name(base)))
}

/// Opens a segment read-only.
pub(super) fn open_read(dir: &Path, base: u64) -> Result<File, Error> {
    File::open(dir.join(name(base))).map_err(|e| Error::io("opening", name(base), e))
}

/// fsyncs a directory so that created, renamed or removed entries survive a crash.
pub(super) fn sync_dir(dir: &Path, label: &str) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", label, e))
}
