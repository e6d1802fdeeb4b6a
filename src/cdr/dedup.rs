//! Bounded duplicate-record-id filter.
//!
//! Carriers re-send rows (a corrected export, an overlapping daily window, the same file
//! dropped twice with different bytes). A row whose record id was committed within the
//! retention window is dropped and counted. The filter keeps a 128-bit hash of
//! (feed, record id), never the id itself, with the time it was committed.
//!
//! Persistence is an append-only log of fixed 24-byte entries (16-byte key, 8-byte
//! little-endian Unix seconds), fsynced per commit; a torn tail from a crash is ignored on
//! load. The log is rewritten (temp file, fsync, rename) when it holds more than twice the
//! live entries, so its size stays bounded by the cap.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

/// Hash of (feed, record id).
pub type Key = [u8; 16];

const ENTRY: usize = 24;

/// How long and how many record ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window: TimeDelta,
    pub cap: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            window: TimeDelta::days(14),
            cap: 2_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("cannot read or write the duplicate filter log")]
    Io(#[from] io::Error),
}

/// The key for a record id within one feed.
pub fn key(feed: &str, record_id: &str) -> Key {
    let mut h = Sha256::new();
    h.update(feed.as_bytes());
    h.update([0u8]);
    h.update(record_id.as_bytes());
    let digest = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

/// The filter with its log file.
pub struct Dedup {
    path: PathBuf,
    log: File,
    seen: HashMap<Key, i64>,
    order: VecDeque<(Key, i64)>,
    log_entries: usize,
    limits: Limits,
}

impl Dedup {
    /// Loads `path` (created if missing), dropping entries outside the limits.
    pub fn open(path: &Path, limits: Limits, now: DateTime<Utc>) -> Result<Self, DedupError> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut d = Self {
            path: path.to_owned(),
            log: open_append(path)?,
            seen: HashMap::new(),
            order: VecDeque::new(),
            log_entries: 0,
            limits,
        };
        for chunk in bytes.chunks_exact(ENTRY) {
            let mut k = [0u8; 16];
            k.copy_from_slice(&chunk[..16]);
            let mut t = [0u8; 8];
            t.copy_from_slice(&chunk[16..]);
            d.insert(k, i64::from_le_bytes(t));
            d.log_entries += 1;
        }
        d.evict(now);
        // A torn tail (crash mid-append) or a mostly dead log: rewrite it whole.
        if bytes.len() % ENTRY != 0 || d.bloated() {
            d.compact()?;
        }
        Ok(d)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.seen.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Remembers `keys` durably (fsync) as committed at `now`.
    pub fn record(&mut self, keys: &[Key], now: DateTime<Utc>) -> Result<(), DedupError> {
        if keys.is_empty() {
            return Ok(());
        }
        let t = now.timestamp();
        let mut buf = Vec::with_capacity(keys.len() * ENTRY);
        for k in keys {
            buf.extend_from_slice(k);
            buf.extend_from_slice(&t.to_le_bytes());
        }
        self.log.write_all(&buf)?;
        self.log.sync_data()?;
        self.log_entries += keys.len();
        for k in keys {
            self.insert(*k, t);
        }
        self.evict(now);
        if self.bloated() {
            self.compact()?;
        }
        Ok(())
    }

    fn insert(&mut self, k: Key, t: i64) {
        if self.seen.insert(k, t).is_none() {
            self.order.push_back((k, t));
        }
    }

    fn evict(&mut self, now: DateTime<Utc>) {
        let oldest = (now - self.limits.window).timestamp();
        while let Some(&(k, t)) = self.order.front() {
            if t >= oldest && self.order.len() <= self.limits.cap {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&k);
        }
    }

    fn bloated(&self) -> bool {
        self.log_entries > 2 * self.seen.len() + 4096
    }

    fn compact(&mut self) -> Result<(), DedupError> {
        let (dir, name) = split(&self.path)?;
        crate::atomic::replace_with(dir, name, 0o600, |w| {
            for (k, t) in &self.order {
                w.write_all(k)?;
                w.write_all(&t.to_le_bytes())?;
            }
            Ok(())
        })?;
        self.log = open_append(&self.path)?;
        self.log_entries = self.order.len();
        Ok(())
    }
}

/// The directory and file name of the log; a bare file name lives in the working directory.
fn split(path: &Path) -> io::Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn recorded_keys_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen");
        let mut d = Dedup::open(&path, Limits::default(), t(0)).unwrap();
        d.record(&[key("f", "a"), key("f", "b")], t(0)).unwrap();
        let d = Dedup::open(&path, Limits::default(), t(1)).unwrap();
        assert!(d.contains(&key("f", "a")));
        assert!(!d.contains(&key("g", "a")), "keys are scoped by feed");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn entries_older_than_window_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen");
        let limits = Limits {
            window: TimeDelta::seconds(100),
            cap: 10,
        };
        let mut d = Dedup::open(&path, limits, t(0)).unwrap();
        d.record(&[key("f", "old")], t(0)).unwrap();
        d.record(&[key("f", "new")], t(150)).unwrap();
        assert!(!d.contains(&key("f", "old")));
        assert!(d.contains(&key("f", "new")));
        let d = Dedup::open(&path, limits, t(160)).unwrap();
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn cap_evicts_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            window: TimeDelta::days(1),
            cap: 3,
        };
        let mut d = Dedup::open(&dir.path().join("seen"), limits, t(0)).unwrap();
        let keys: Vec<Key> = (0..5).map(|i| key("f", &i.to_string())).collect();
        d.record(&keys, t(0)).unwrap();
        assert_eq!(d.len(), 3);
        assert!(!d.contains(&keys[1]));
        assert!(d.contains(&keys[4]));
    }

    #[test]
    fn torn_tail_is_ignored_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen");
        let mut d = Dedup::open(&path, Limits::default(), t(0)).unwrap();
        d.record(&[key("f", "a")], t(0)).unwrap();
        drop(d);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[1, 2, 3])
            .unwrap();
        let d = Dedup::open(&path, Limits::default(), t(0)).unwrap();
        assert!(d.contains(&key("f", "a")));
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, ENTRY);
    }

    #[test]
    fn log_is_compacted_when_mostly_dead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen");
        let limits = Limits {
            window: TimeDelta::days(1),
            cap: 10,
        };
        let mut d = Dedup::open(&path, limits, t(0)).unwrap();
        for chunk in 0..60 {
            let keys: Vec<Key> = (0..100)
                .map(|i| key("f", &(chunk * 100 + i).to_string()))
                .collect();
            d.record(&keys, t(0)).unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() as usize <= (2 * 10 + 4096 + 1) * ENTRY);
        assert_eq!(d.len(), 10);
    }
}
