//! Raw carrier CDR files once ingested: storage limitation (GDPR Art. 5(1)(e)) for the store
//! that holds every caller's number in the clear, CLIR callers included.
//!
//! By default a feed moves each ingested file into its private raw store,
//! `<data_dir>/cdr/raw/<feed>/` (directories 0700, the file 0600 and ours, whatever the
//! carrier's upload permissions were), and the purge deletes it `raw_retention_hours` (72)
//! after the ingest. The move is a rename on the same filesystem; across filesystems it is a
//! copy into a temporary file, fsync, rename, then removal of the original. The stored file's
//! mtime is set to the moment it entered the store: that is what the purge counts from, so a
//! back-filled export from last year is not deleted the minute it is ingested.
//!
//! An operator's `done_dir` (`after = "move"`) gets the same move and the same retention, but
//! its purge touches only names of the feed's glob (plus the `.N` suffix a same-named later
//! file gets), and an existing directory keeps its mode. A feed that keeps its files in the
//! spool (`after = "keep"`) with `raw_retention_hours` has them deleted from the spool once
//! their mtime is that old, and only those the checkpoints know as completely ingested.
//!
//! A moved or purged file is never ingested again: the checkpoints know it by identity and by
//! content fingerprint (for `cdr.quarantine_days`), so the same export dropped into the spool
//! again is recognised.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use globset::GlobMatcher;

use crate::data_dir::DataDir;

use super::watch::{After, Feed, marker_path};

/// `raw_retention_hours` when a feed moves its files and does not set it.
pub const DEFAULT_RETENTION_HOURS: u64 = 72;

/// A copy across filesystems is written under this suffix and renamed when complete.
const TMP_SUFFIX: &str = ".calltrackd-tmp";

/// `<data_dir>/cdr/raw/<feed>/`: the feed's private raw store.
pub fn store_dir(data_dir: &Path, feed: &str) -> PathBuf {
    DataDir::new(data_dir).cdr_raw(feed)
}

/// Creates the raw store `dir` and its `raw/` parent with mode 0700, and sets 0700 on them
/// when they exist already (a store made by hand or by an older version).
pub fn open_store(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let private = || fs::Permissions::from_mode(0o700);
    if let Some(raw) = dir.parent() {
        fs::set_permissions(raw, private())?;
    }
    fs::set_permissions(dir, private())
}

/// Creates an operator's `done_dir` (0700 where we create it; an existing one keeps its mode).
pub fn open_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Moves an ingested file into `dir` without overwriting an earlier file of the same name
/// (carriers reuse daily names): the file ends up 0600, owned by us, with mtime `now`.
pub fn move_into(path: &Path, dir: &Path, now: SystemTime) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
        .to_owned();
    let target = free_name(dir, name);
    match fs::rename(path, &target) {
        Ok(()) => adopt(&target, now)?,
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            copy_private(path, &target, now)?;
            sync_dir(dir)?;
            // The checkpoint already says done: a crash before this removal leaves the
            // original, which the next scan finds complete and moves again.
            fs::remove_file(path)?;
        }
        Err(e) => return Err(e),
    }
    sync_dir(dir)?;
    Ok(target)
}

fn free_name(dir: &Path, name: OsString) -> PathBuf {
    let mut target = dir.join(&name);
    let mut n = 1;
    while target.exists() {
        let mut alt = name.clone();
        alt.push(format!(".{n}"));
        target = dir.join(alt);
        n += 1;
    }
    target
}

/// Makes a renamed file private. Carriers upload as their own SFTP user into a spool we may
/// only write to by group: then the file is not ours to chmod, so we keep a copy of our own.
fn adopt(target: &Path, now: SystemTime) -> io::Result<()> {
    match fs::set_permissions(target, fs::Permissions::from_mode(0o600)) {
        Ok(()) => File::open(target)?.set_modified(now),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // Renaming the copy over the original needs only the directory, which is ours.
            copy_private(target, target, now)
        }
        Err(e) => Err(e),
    }
}

/// Copies `from` to `to` through a 0600 temporary file in `to`'s directory (fsynced, then
/// renamed), so `to` is never seen half-written or with the carrier's permissions.
fn copy_private(from: &Path, to: &Path, now: SystemTime) -> io::Result<()> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut src = File::open(from)?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        io::copy(&mut src, &mut dst)?;
        dst.set_modified(now)?;
        dst.sync_all()?;
        fs::rename(&tmp, to)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Which files of a directory a purge may delete.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The feed's private raw store: everything in it is ours.
    Store,
    /// An operator's `done_dir`: only names of the feed's glob (with an optional `.N`).
    DoneDir(GlobMatcher),
    /// The spool of a feed that keeps its files: names of its glob, once ingested; the
    /// `<file>.done` marker goes with its file.
    Spool { matcher: GlobMatcher, marker: bool },
}

/// Where one feed's ingested raw files rest, and for how long.
#[derive(Debug, Clone)]
pub struct Retention {
    /// The feed's name, for logs.
    pub feed: String,
    pub dir: PathBuf,
    pub max_age: Duration,
    pub scope: Scope,
}

impl Retention {
    /// The retention of `feed`'s raw files; `None` when there is nothing to purge (the feed
    /// deletes its files, or keeps them without a retention).
    pub fn for_feed(feed: &Feed, data_dir: &Path) -> Option<Self> {
        let max_age = feed.raw_retention()?;
        let matcher = feed.matcher().ok()?;
        let (dir, scope) = match feed.after(data_dir) {
            After::Store(dir) => (dir, Scope::Store),
            After::Move(dir) => (dir, Scope::DoneDir(matcher)),
            After::Keep => (
                feed.spool_dir.clone(),
                Scope::Spool {
                    matcher,
                    marker: feed.uses_marker(),
                },
            ),
            After::Delete => return None,
        };
        Some(Self {
            feed: feed.name.clone(),
            dir,
            max_age,
            scope,
        })
    }

    /// The private raw store of `name` with the default retention (what `cdr import` uses).
    pub fn store(data_dir: &Path, name: &str) -> Self {
        Self {
            feed: name.to_owned(),
            dir: store_dir(data_dir, name),
            max_age: hours(DEFAULT_RETENTION_HOURS),
            scope: Scope::Store,
        }
    }

    /// Deletes the files last modified more than `max_age` before `now`; returns how many.
    /// `ingested` is asked about spool files only: a file not yet (or not completely) ingested
    /// stays.
    pub fn purge(
        &self,
        now: SystemTime,
        mut ingested: impl FnMut(&Path) -> bool,
    ) -> io::Result<usize> {
        let Some(cutoff) = now.checked_sub(self.max_age) else {
            return Ok(0);
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            // Nothing ingested yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Not followed: a symlink in a spool is not a file we were given. A file gone since
            // the listing (moved by the ingest meanwhile) is skipped.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() || !self.covers(name) || meta.modified()? >= cutoff {
                continue;
            }
            let path = entry.path();
            if matches!(self.scope, Scope::Spool { .. }) && !ingested(&path) {
                continue;
            }
            remove(&path)?;
            if let Scope::Spool { marker: true, .. } = self.scope {
                remove(&marker_path(&path))?;
            }
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    fn covers(&self, name: &str) -> bool {
        match &self.scope {
            Scope::Store => true,
            Scope::DoneDir(matcher) => {
                let name = name.strip_suffix(TMP_SUFFIX).unwrap_or(name);
                matcher.is_match(name) || matcher.is_match(without_counter(name))
            }
            Scope::Spool { matcher, marker } => {
                matcher.is_match(name) && !(*marker && name.ends_with(".done"))
            }
        }
    }
}

/// `x.csv.3` → `x.csv`: the name `move_into` gave a later file of the same name.
fn without_counter(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whole hours as a `Duration`, saturating.
pub fn hours(h: u64) -> Duration {
    Duration::from_secs(h.saturating_mul(3600))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use globset::Glob;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    /// Writes `name` in `dir`, last modified `age` ago.
    fn aged(dir: &Path, name: &str, age: Duration) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, b"x").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        path
    }

    fn glob(pattern: &str) -> GlobMatcher {
        Glob::new(pattern).unwrap().compile_matcher()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_moved_file_is_private_and_dated_by_its_move() {
        let data = tempfile::tempdir().unwrap();
        let spool = tempfile::tempdir().unwrap();
        let file = aged(spool.path(), "a.csv", 400 * HOUR);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let store = store_dir(data.path(), "carrier");
        open_store(&store).unwrap();
        let now = SystemTime::now();
        let moved = move_into(&file, &store, now).unwrap();
        assert_eq!(moved, store.join("a.csv"));
        assert!(!file.exists());
        assert_eq!(mode(&moved), 0o600);
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(store.parent().unwrap()), 0o700);
        let mtime = fs::metadata(&moved).unwrap().modified().unwrap();
        assert!(
            mtime.max(now).duration_since(mtime.min(now)).unwrap() < Duration::from_secs(1),
            "dated by the move, not by the carrier"
        );
        // A later file of the same name does not overwrite the first.
        let again = aged(spool.path(), "a.csv", HOUR);
        assert_eq!(
            move_into(&again, &store, now).unwrap(),
            store.join("a.csv.1")
        );
    }

    #[test]
    fn open_store_tightens_an_existing_store() {
        let data = tempfile::tempdir().unwrap();
        let store = store_dir(data.path(), "carrier");
        fs::create_dir_all(&store).unwrap();
        fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).unwrap();
        open_store(&store).unwrap();
        assert_eq!(mode(&store), 0o700);
    }

    #[test]
    fn copy_private_replaces_a_file_in_place_with_a_private_copy() {
        let dir = tempfile::tempdir().unwrap();
        let file = aged(dir.path(), "a.csv", HOUR);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let now = SystemTime::now();
        copy_private(&file, &file, now).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"x");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(names(dir.path()), ["a.csv"], "no temporary file left");
    }

    #[test]
    fn the_store_purge_deletes_by_age_only() {
        let data = tempfile::tempdir().unwrap();
        let r = Retention::store(data.path(), "import");
        assert_eq!(
            r.purge(SystemTime::now(), |_| false).unwrap(),
            0,
            "no store yet"
        );
        open_store(&r.dir).unwrap();
        aged(&r.dir, "old.csv", 73 * HOUR);
        aged(&r.dir, "old.csv.1", 100 * HOUR);
        aged(&r.dir, "young.csv", 71 * HOUR);
        assert_eq!(r.purge(SystemTime::now(), |_| false).unwrap(), 2);
        assert_eq!(names(&r.dir), ["young.csv"]);
    }

    #[test]
    fn a_done_dir_purge_spares_files_that_are_not_the_feeds() {
        let dir = tempfile::tempdir().unwrap();
        let r = Retention {
            feed: "f".into(),
            dir: dir.path().to_owned(),
            max_age: 72 * HOUR,
            scope: Scope::DoneDir(glob("*.csv.gz")),
        };
        for name in [
            "a.csv.gz",
            "a.csv.gz.2",
            "b.csv.gz.calltrackd-tmp",
            "notes.txt",
            "a.csv.gzip",
        ] {
            aged(dir.path(), name, 80 * HOUR);
        }
        aged(dir.path(), "c.csv.gz", HOUR);
        assert_eq!(r.purge(SystemTime::now(), |_| false).unwrap(), 3);
        assert_eq!(names(dir.path()), ["a.csv.gzip", "c.csv.gz", "notes.txt"]);
    }

    #[test]
    fn a_spool_purge_deletes_only_ingested_files_with_their_marker() {
        let dir = tempfile::tempdir().unwrap();
        let r = Retention {
            feed: "f".into(),
            dir: dir.path().to_owned(),
            max_age: 24 * HOUR,
            scope: Scope::Spool {
                matcher: glob("*.csv"),
                marker: true,
            },
        };
        let done = aged(dir.path(), "done.csv", 30 * HOUR);
        aged(dir.path(), "done.csv.done", 30 * HOUR);
        aged(dir.path(), "waiting.csv", 30 * HOUR);
        aged(dir.path(), "fresh.csv", HOUR);
        aged(dir.path(), "other.txt", 30 * HOUR);
        let removed = r.purge(SystemTime::now(), |p| p == done.as_path()).unwrap();
        assert_eq!(removed, 1);
        assert_eq!(names(dir.path()), ["fresh.csv", "other.txt", "waiting.csv"]);
    }

    #[test]
    fn counters_are_stripped_only_when_numeric() {
        assert_eq!(without_counter("a.csv.12"), "a.csv");
        assert_eq!(without_counter("a.csv"), "a.csv");
        assert_eq!(without_counter("a.csv."), "a.csv.");
        assert_eq!(without_counter("plain"), "plain");
    }
}
