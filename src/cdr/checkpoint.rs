//! Exactly-once file bookkeeping in `<data_dir>/cdr/checkpoints/`.
//!
//! A file is known by its identity (device, inode, SHA-256 of the first 4 KiB: a rename keeps
//! it, a reused inode does not) and by its content fingerprint (SHA-256 of the first 64 KiB
//! plus the length: the same export dropped again under a new name or copied). `lookup`
//! tries the identity first, then the fingerprint.
//!
//! Each file's record is one small JSON file written atomically (temp file, fsync, rename,
//! fsync of the directory). The caller commits only after the rows' events are durable
//! downstream, so a crash replays at most the uncommitted batch, and the duplicate filter
//! (committed first) drops that replay's rows again.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data_dir::DataDir;

use super::dedup::{Dedup, DedupError, Key, Limits};
use super::reader::Resume;

const HEAD: u64 = 4 * 1024;
const PRINT: u64 = 64 * 1024;

/// Content fingerprint: SHA-256 of the first 64 KiB and the whole length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    #[serde(with = "hex32")]
    pub sha256: [u8; 32],
    pub len: u64,
}

/// Identity of one file on disk plus its content fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
    #[serde(with = "hex32")]
    pub head: [u8; 32],
    pub fingerprint: Fingerprint,
}

impl FileId {
    /// Reads the identity of `path` (at most 64 KiB).
    pub fn of(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let mut first = Vec::with_capacity(PRINT as usize);
        file.take(PRINT).read_to_end(&mut first)?;
        let head_len = first.len().min(HEAD as usize);
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
            head: Sha256::digest(&first[..head_len]).into(),
            fingerprint: Fingerprint {
                sha256: Sha256::digest(&first).into(),
                len: meta.len(),
            },
        })
    }

    /// The record's file name stem.
    fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.device.to_le_bytes());
        h.update(self.inode.to_le_bytes());
        h.update(self.head);
        hex::encode(&h.finalize()[..16])
    }
}

/// Progress of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub fingerprint: Fingerprint,
    pub offset_done: u64,
    /// Line on which the next record starts, for resuming with right line numbers.
    pub line_done: u64,
    pub rows_done: u64,
    pub complete: bool,
    pub updated_at: DateTime<Utc>,
}

impl State {
    /// Where a resumed read continues.
    pub fn resume(&self) -> Resume {
        Resume {
            offset: self.offset_done,
            line: self.line_done,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: FileId,
    state: State,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write a CDR checkpoint")]
    Io(#[from] io::Error),
    #[error("cannot encode a CDR checkpoint")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Dedup(#[from] DedupError),
}

/// All checkpoints and the duplicate filter.
pub struct Checkpoints {
    dir: PathBuf,
    records: HashMap<String, Record>,
    dedup: Dedup,
}

impl Checkpoints {
    /// Opens (creating, mode 0700) `<data_dir>/cdr/checkpoints/` and loads every record.
    pub fn open(
        data_dir: &Path,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> Result<Self, CheckpointError> {
        let dir = DataDir::new(data_dir).cdr_checkpoints();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let mut records = HashMap::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let loaded = fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
                    match loaded {
                        Some(r) => {
                            records.insert(r.id.key(), r);
                        }
                        // Unreadable record: the file will be re-read, and the duplicate
                        // filter drops rows already delivered.
                        None => tracing::warn!("Unreadable CDR checkpoint ignored."),
                    }
                }
                // Leftover from a crash between write and rename.
                Some("tmp") => fs::remove_file(&path)?,
                _ => {}
            }
        }
        let dedup = Dedup::open(&dir.join("seen.log"), limits, now)?;
        Ok(Self {
            dir,
            records,
            dedup,
        })
    }

    /// Finds the record of a file that was shorter than 4 KiB when last committed and has grown
    /// since: its identity changed with its first 4 KiB, but its device, inode and old content
    /// (the first bytes of the file now) are the same. The record moves to the new identity, so
    /// reading goes on from its offset and no stale record stays behind. `path` is the file `id`
    /// was read from.
    pub fn adopt_grown(
        &mut self,
        path: &Path,
        id: &FileId,
    ) -> Result<Option<State>, CheckpointError> {
        let candidates: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| {
                r.id.device == id.device
                    && r.id.inode == id.inode
                    && r.id.fingerprint.len < HEAD
                    && r.id.fingerprint.len < id.fingerprint.len
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in candidates {
            let Some(old) = self.records.get(&key) else {
                continue;
            };
            let mut prefix = Vec::new();
            File::open(path)?
                .take(old.id.fingerprint.len)
                .read_to_end(&mut prefix)?;
            if <[u8; 32]>::from(Sha256::digest(&prefix)) != old.id.head {
                continue;
            }
            let Some(old) = self.records.remove(&key) else {
                continue;
            };
            // The state keeps the old length, so `grew` sees the growth.
            let state = old.state;
            self.write(Record { id: *id, state })?;
            match fs::remove_file(self.dir.join(format!("{key}.json"))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            File::open(&self.dir)?.sync_all()?;
            return Ok(Some(state));
        }
        Ok(None)
    }

    /// The state of `id`: by identity, else by content fingerprint (a completed match first).
    pub fn lookup(&self, id: &FileId) -> Option<State> {
        if let Some(r) = self.records.get(&id.key()) {
            return Some(r.state);
        }
        let mut same = self
            .records
            .values()
            .filter(|r| r.state.fingerprint == id.fingerprint);
        let first = same.next()?;
        Some(
            std::iter::once(first)
                .chain(same)
                .find(|r| r.state.complete)
                .unwrap_or(first)
                .state,
        )
    }

    /// Whether `id` is a file known by its identity that is now longer than at its last
    /// commit: it grew after it was read, and reading goes on from the committed offset.
    /// (A file that grew within its first 4 KiB has a new identity: `adopt_grown` finds it.)
    pub fn grew(&self, id: &FileId) -> bool {
        self.records
            .get(&id.key())
            .is_some_and(|r| id.fingerprint.len > r.state.fingerprint.len)
    }

    /// Whether the duplicate filter has seen `key`.
    pub fn seen(&self, key: &Key) -> bool {
        self.dedup.contains(key)
    }

    /// Records that everything before `at` is delivered, and remembers the delivered rows'
    /// keys. The keys are made durable first: after a crash between the two writes the
    /// replayed rows are dropped as duplicates rather than delivered twice.
    pub fn commit(
        &mut self,
        id: &FileId,
        at: Resume,
        rows_done: u64,
        keys: &[Key],
        now: DateTime<Utc>,
    ) -> Result<(), CheckpointError> {
        self.dedup.record(keys, now)?;
        self.write(Record {
            id: *id,
            state: State {
                fingerprint: id.fingerprint,
                offset_done: at.offset,
                line_done: at.line,
                rows_done,
                complete: false,
                updated_at: now,
            },
        })
    }

    /// Marks `id` as fully ingested.
    pub fn complete(&mut self, id: &FileId, now: DateTime<Utc>) -> Result<(), CheckpointError> {
        let mut state = self.records.get(&id.key()).map_or(
            State {
                fingerprint: id.fingerprint,
                offset_done: id.fingerprint.len,
                line_done: 0,
                rows_done: 0,
                complete: true,
                updated_at: now,
            },
            |r| r.state,
        );
        state.complete = true;
        state.updated_at = now;
        // The length it was finished at, so `grew` notices a later append.
        state.fingerprint = id.fingerprint;
        self.write(Record { id: *id, state })
    }

    /// Forgets completed files last touched before `cutoff`; returns how many.
    pub fn prune(&mut self, cutoff: DateTime<Utc>) -> Result<usize, CheckpointError> {
        let old: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| r.state.complete && r.state.updated_at < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            match fs::remove_file(self.dir.join(format!("{k}.json"))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            self.records.remove(k);
        }
        if !old.is_empty() {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(old.len())
    }

    fn write(&mut self, record: Record) -> Result<(), CheckpointError> {
        let key = record.id.key();
        let bytes = serde_json::to_vec(&record)?;
        crate::atomic::replace(&self.dir, &format!("{key}.json"), &bytes, 0o600)?;
        self.records.insert(key, record);
        Ok(())
    }
}

/// SHA-256 digests as hex strings in the JSON records.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| D::Error::custom("bad digest"))?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cdr::dedup::key;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_636_800, 0).unwrap()
    }

    fn write(path: &Path, bytes: &[u8]) {
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn commit_and_complete_survive_reopen() {
        let data = tempfile::tempdir().unwrap();
        let file = data.path().join("a.csv");
        write(&file, b"x,y\n1,2\n");
        let id = FileId::of(&file).unwrap();
        let mut cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        assert_eq!(cp.lookup(&id), None);
        cp.commit(
            &id,
            Resume { offset: 4, line: 2 },
            1,
            &[key("f", "1")],
            now(),
        )
        .unwrap();
        let cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        let st = cp.lookup(&id).unwrap();
        assert_eq!(
            (st.offset_done, st.line_done, st.rows_done, st.complete),
            (4, 2, 1, false)
        );
        assert!(cp.seen(&key("f", "1")));
        let mut cp = cp;
        cp.complete(&id, now()).unwrap();
        let cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        assert!(cp.lookup(&id).unwrap().complete);
    }

    #[test]
    fn same_content_under_new_name_is_found_by_fingerprint() {
        let data = tempfile::tempdir().unwrap();
        let a = data.path().join("a.csv");
        let b = data.path().join("b.csv");
        write(&a, b"same bytes\n");
        write(&b, b"same bytes\n");
        let (ia, ib) = (FileId::of(&a).unwrap(), FileId::of(&b).unwrap());
        assert_ne!(ia.inode, ib.inode);
        assert_eq!(ia.fingerprint, ib.fingerprint);
        let mut cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        cp.complete(&ia, now()).unwrap();
        assert!(cp.lookup(&ib).unwrap().complete);
    }

    #[test]
    fn rename_keeps_identity() {
        let data = tempfile::tempdir().unwrap();
        let a = data.path().join("a.csv");
        write(&a, b"content\n");
        let before = FileId::of(&a).unwrap();
        let b = data.path().join("renamed.csv");
        fs::rename(&a, &b).unwrap();
        assert_eq!(FileId::of(&b).unwrap(), before);
    }

    #[test]
    fn records_are_private_files() {
        let data = tempfile::tempdir().unwrap();
        let a = data.path().join("a.csv");
        write(&a, b"content\n");
        let mut cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        cp.complete(&FileId::of(&a).unwrap(), now()).unwrap();
        let dir = data.path().join("cdr/checkpoints");
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        for e in fs::read_dir(&dir).unwrap() {
            assert_eq!(e.unwrap().metadata().unwrap().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_small_file_that_grew_keeps_its_record_under_its_new_identity() {
        let data = tempfile::tempdir().unwrap();
        let a = data.path().join("a.csv");
        write(&a, b"h\n1\n");
        let before = FileId::of(&a).unwrap();
        let mut cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        cp.commit(&before, Resume { offset: 4, line: 3 }, 1, &[], now())
            .unwrap();
        cp.complete(&before, now()).unwrap();
        write(&a, b"h\n1\n2\n");
        let after = FileId::of(&a).unwrap();
        assert_ne!(before.key(), after.key(), "the head changed");
        assert_eq!(cp.lookup(&after), None);
        let state = cp.adopt_grown(&a, &after).unwrap().unwrap();
        assert_eq!((state.offset_done, state.line_done), (4, 3));
        assert!(cp.grew(&after));
        let cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        assert!(cp.lookup(&after).is_some(), "moved for good");
        let files = fs::read_dir(data.path().join("cdr/checkpoints"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert_eq!(files, 1, "no stale record");
        // Other content in the same inode (rewritten, not appended) is not adopted.
        let mut cp = cp;
        write(&a, b"x\n9\n9\n9\n9\n9\n");
        let other = FileId::of(&a).unwrap();
        assert_eq!(cp.adopt_grown(&a, &other).unwrap(), None);
    }

    #[test]
    fn prune_forgets_old_complete_records_only() {
        let data = tempfile::tempdir().unwrap();
        let (a, b) = (data.path().join("a"), data.path().join("b"));
        write(&a, b"aaa");
        write(&b, b"bbb");
        let (ia, ib) = (FileId::of(&a).unwrap(), FileId::of(&b).unwrap());
        let mut cp = Checkpoints::open(data.path(), Limits::default(), now()).unwrap();
        cp.complete(&ia, now()).unwrap();
        cp.commit(&ib, Resume::default(), 0, &[], now()).unwrap();
        assert_eq!(cp.prune(now() + chrono::TimeDelta::days(1)).unwrap(), 1);
        assert_eq!(cp.lookup(&ia), None);
        assert!(cp.lookup(&ib).is_some());
    }
}
