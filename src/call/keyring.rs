//! The pseudonym keyring: one random 32-byte key per epoch, in `<dir>/<key_id>.key`.
//!
//! Files, not config text, hold the keys (secrets never live in the config). Permissions are
//! enforced rather than hoped for: the directory is created 0700, keys 0600, and a key file that
//! group or others can touch is refused, because anyone who can read a key can reverse every
//! caller pseudonym of its epoch by enumerating numbers. New keys are written to a private temp
//! file and published with `link(2)`, which fails if the name exists: two daemons (or a daemon and
//! the `keys` CLI) racing at an epoch boundary both end up with the one key that won.
//!
//! Erasure is crypto-shredding: overwriting and deleting a key makes the epoch's pseudonyms
//! unlinkable to any number. Overwriting is best effort on copy-on-write or flash storage, which
//! is why the deletion itself is the guarantee that matters and backups of the key dir must
//! follow the same retention.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::epoch::{self, Rotation};
use super::pseudonym::{self, Pseudonym, Purpose};

const KEY_LEN: usize = 32;
const KEY_EXT: &str = "key";

/// Why the keyring refused. Paths are ours (config), so naming them is fine; no input is echoed.
/// An I/O cause is the `source`, not part of the message (`ops::Chain` prints both).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key directory {} cannot be used", path.display())]
    Dir { path: PathBuf, source: io::Error },
    #[error(
        "key directory {} is accessible by group or others; fix with `chmod 700 {}`",
        path.display(), path.display()
    )]
    DirPermissions { path: PathBuf },
    #[error("key file {} cannot be read or written", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "key file {} is readable or writable by group or others; fix with `chmod 600 {}` \
         and treat the key as possibly disclosed",
        path.display(), path.display()
    )]
    Permissions { path: PathBuf },
    #[error("key file {} is not a regular file of 32 bytes; restore it or shred it", path.display())]
    Corrupt { path: PathBuf },
    #[error("key id is not a daily, weekly or monthly epoch name")]
    InvalidKeyId,
    #[error("refusing to shred the key of the current epoch without force")]
    CurrentEpoch,
    #[error("no key file exists for epoch {key_id}")]
    NotFound { key_id: String },
    #[error("refusing to create a key for an epoch after the current one")]
    FutureEpoch,
}

/// One epoch's key as listed for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    /// The key file's modification time, which is its creation time since keys are never
    /// rewritten (creation time itself is not available on every file system).
    pub created: DateTime<Utc>,
}

/// Secret key bytes. `Debug` never shows them; dropping overwrites them (best effort: without
/// `unsafe` the compiler may elide it, and copies may exist in freed memory).
struct Secret([u8; KEY_LEN], pseudonym::Keyed);

impl Secret {
    fn new(bytes: [u8; KEY_LEN]) -> Self {
        let keyed = pseudonym::Keyed::new(&bytes);
        Self(bytes, keyed)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0 = [0; KEY_LEN];
        std::hint::black_box(&self.0);
    }
}

/// Rotating pseudonym keys, cached in memory after first use.
pub struct Keyring {
    dir: PathBuf,
    rotation: Rotation,
    cache: RwLock<HashMap<String, Arc<Secret>>>,
    /// Opened for a read-only command: never creates the directory or a key.
    read_only: bool,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cached: Vec<String> = self.read_cache().keys().cloned().collect();
        cached.sort();
        f.debug_struct("Keyring")
            .field("dir", &self.dir)
            .field("rotation", &self.rotation)
            .field("cached_key_ids", &cached)
            .finish()
    }
}

impl Keyring {
    /// Opens (creating if needed) the key directory and loads every key, so a bad permission or
    /// a damaged file stops the daemon at start rather than mid-call.
    pub fn open(dir: &Path, rotation: Rotation) -> Result<Self, KeyError> {
        Self::open_at(dir, rotation, Utc::now())
    }

    /// [`Keyring::open`] with an explicit clock, for tests and the CLI.
    pub fn open_at(dir: &Path, rotation: Rotation, now: DateTime<Utc>) -> Result<Self, KeyError> {
        private_dir(dir)?;
        let ring = Self {
            dir: dir.to_owned(),
            rotation,
            cache: RwLock::new(HashMap::new()),
            read_only: false,
        };
        for key_id in ring.key_ids()? {
            ring.secret(&key_id)?;
        }
        ring.secret(&rotation.key_id(now))?;
        Ok(ring)
    }

    /// Opens the keys on disk for a read-only command (`keys list`, `subject find`): creates
    /// neither the directory nor any key, so such a command leaves the data directory as it
    /// found it. A missing directory is an empty keyring. The permission checks still apply.
    pub fn open_read_only(dir: &Path, rotation: Rotation) -> Result<Self, KeyError> {
        let ring = Self {
            dir: dir.to_owned(),
            rotation,
            cache: RwLock::new(HashMap::new()),
            read_only: true,
        };
        match fs::metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ring),
            Err(source) => {
                return Err(KeyError::Dir {
                    path: dir.to_owned(),
                    source,
                });
            }
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                return Err(KeyError::DirPermissions {
                    path: dir.to_owned(),
                });
            }
            Ok(_) => {}
        }
        for key_id in ring.key_ids()? {
            ring.secret(&key_id)?;
        }
        Ok(ring)
    }

    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// The key id that pseudonyms made at `at` carry.
    pub fn key_id(&self, at: DateTime<Utc>) -> String {
        self.rotation.key_id(at)
    }

    /// The pseudonym of `input` for `purpose` under the key of the epoch containing `at`.
    /// A missing key is generated, also for past epochs (late CDRs) and shredded ones: a new
    /// random key cannot link to pseudonyms made under the shredded one. An `at` in an epoch
    /// after the current one is refused: a future-dated CDR must not create a key that would
    /// count as the newest for pruning.
    pub fn pseudonymize(
        &self,
        purpose: Purpose,
        input: &[u8],
        at: DateTime<Utc>,
    ) -> Result<Pseudonym, KeyError> {
        self.pseudonymize_at(purpose, input, at, Utc::now())
    }

    /// [`Keyring::pseudonymize`] with an explicit clock.
    pub fn pseudonymize_at(
        &self,
        purpose: Purpose,
        input: &[u8],
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Pseudonym, KeyError> {
        if self.rotation.first_day(at) > self.rotation.first_day(now) {
            return Err(KeyError::FutureEpoch);
        }
        let key_id = self.key_id(at);
        let secret = self.secret(&key_id)?;
        let value = secret.1.derive(purpose, input);
        Ok(Pseudonym { key_id, value })
    }

    /// The pseudonym of `input` under the key `key_id` already on disk; never creates a key
    /// (data-subject requests search the epochs that exist).
    pub fn pseudonym_under(
        &self,
        purpose: Purpose,
        input: &[u8],
        key_id: &str,
    ) -> Result<Pseudonym, KeyError> {
        if epoch::start(key_id).is_none() {
            return Err(KeyError::InvalidKeyId);
        }
        let secret = self.existing(key_id)?;
        Ok(Pseudonym {
            key_id: key_id.to_owned(),
            value: secret.1.derive(purpose, input),
        })
    }

    /// Whether `key_id` names an epoch after the one containing `now`.
    fn is_future(&self, key_id: &str, now: DateTime<Utc>) -> bool {
        epoch::start(key_id) > epoch::start(&self.key_id(now))
    }

    /// The keys on disk, oldest epoch first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        self.key_ids()?
            .into_iter()
            .map(|key_id| {
                let path = self.path(&key_id);
                let modified = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map_err(|source| KeyError::Io { path, source })?;
                Ok(KeyInfo {
                    key_id,
                    created: modified.into(),
                })
            })
            .collect()
    }

    /// Crypto-shreds one epoch's key: overwrite, sync, delete, forget.
    pub fn shred(&self, key_id: &str, force: bool) -> Result<(), KeyError> {
        self.shred_at(key_id, force, Utc::now())
    }

    /// [`Keyring::shred`] with an explicit clock. The current epoch's key is refused unless
    /// `force`, since shredding it splits ongoing calls' caller pseudonyms in two.
    pub fn shred_at(&self, key_id: &str, force: bool, now: DateTime<Utc>) -> Result<(), KeyError> {
        if epoch::start(key_id).is_none() {
            return Err(KeyError::InvalidKeyId);
        }
        if !force && key_id == self.key_id(now) {
            return Err(KeyError::CurrentEpoch);
        }
        let mut cache = self.write_cache();
        cache.remove(key_id);
        let path = self.path(key_id);
        let io_err = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let mut file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeyError::NotFound {
                    key_id: key_id.to_owned(),
                });
            }
            Err(e) => return Err(io_err(e)),
        };
        let len = file.metadata().map_err(io_err)?.len();
        let zeros = vec![0; usize::try_from(len).unwrap_or(KEY_LEN).max(KEY_LEN)];
        file.write_all(&zeros).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        fs::remove_file(&path).map_err(io_err)?;
        sync_dir(&self.dir)
    }

    /// Shreds all but the newest `keep` epochs up to the current one; the current epoch is
    /// always kept. Keys of epochs after the current one (made by an earlier version from
    /// future-dated CDRs, or under a clock that was wrong) neither count as newest nor are
    /// shredded here: counting them would shred the current and recent keys.
    /// Returns the shredded key ids.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>, KeyError> {
        self.prune_at(keep, Utc::now())
    }

    /// [`Keyring::prune`] with an explicit clock.
    pub fn prune_at(&self, keep: usize, now: DateTime<Utc>) -> Result<Vec<String>, KeyError> {
        let current = self.key_id(now);
        let ids: Vec<String> = self
            .key_ids()?
            .into_iter()
            .filter(|id| !self.is_future(id, now))
            .collect();
        let old = ids.len().saturating_sub(keep);
        let doomed: Vec<String> = ids
            .into_iter()
            .take(old)
            .filter(|id| *id != current)
            .collect();
        for id in &doomed {
            self.shred_at(id, false, now)?;
        }
        Ok(doomed)
    }

    fn path(&self, key_id: &str) -> PathBuf {
        self.dir.join(format!("{key_id}.{KEY_EXT}"))
    }

    /// Key ids of the files in the directory, oldest epoch first. Other files are ignored.
    fn key_ids(&self) -> Result<Vec<String>, KeyError> {
        let dir_err = |source| KeyError::Dir {
            path: self.dir.clone(),
            source,
        };
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if self.read_only && e.kind() == io::ErrorKind::NotFound => {
                return Ok(Vec::new());
            }
            other => other.map_err(dir_err)?,
        };
        for entry in entries {
            let name = entry.map_err(dir_err)?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if let Some(start) = epoch::start(stem) {
                ids.push((start, stem.to_owned()));
            }
        }
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    fn secret(&self, key_id: &str) -> Result<Arc<Secret>, KeyError> {
        if let Some(s) = self.read_cache().get(key_id) {
            return Ok(Arc::clone(s));
        }
        let mut cache = self.write_cache();
        if let Some(s) = cache.get(key_id) {
            return Ok(Arc::clone(s));
        }
        let secret = if self.read_only {
            read_key(&self.path(key_id)).map_err(|e| not_found(e, key_id))?
        } else {
            self.load_or_create(key_id)?
        };
        let secret = Arc::new(secret);
        cache.insert(key_id.to_owned(), Arc::clone(&secret));
        Ok(secret)
    }

    /// A key on disk (or cached), never generated.
    fn existing(&self, key_id: &str) -> Result<Arc<Secret>, KeyError> {
        if let Some(s) = self.read_cache().get(key_id) {
            return Ok(Arc::clone(s));
        }
        let secret = Arc::new(read_key(&self.path(key_id)).map_err(|e| not_found(e, key_id))?);
        self.write_cache()
            .insert(key_id.to_owned(), Arc::clone(&secret));
        Ok(secret)
    }

    fn load_or_create(&self, key_id: &str) -> Result<Secret, KeyError> {
        load_or_create(&self.dir, key_id)
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Secret>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still a consistent cache.
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Secret>>> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads the key `<dir>/<name>.key`, or generates it: published with `link(2)`
/// (`atomic::publish_new`) so that two processes racing for the same key both end up with one
/// key.
fn load_or_create(dir: &Path, name: &str) -> Result<Secret, KeyError> {
    let file_name = format!("{name}.{KEY_EXT}");
    let path = dir.join(&file_name);
    match read_key(&path) {
        Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut bytes = [0; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = Secret::new(bytes);
    bytes = [0; KEY_LEN];
    std::hint::black_box(&bytes);

    match crate::atomic::publish_new(dir, &file_name, &secret.0, 0o600) {
        Ok(()) => {
            tracing::info!(key_id = name, "Pseudonym key generated.");
            Ok(secret)
        }
        // Someone else published this epoch's key first; theirs is the key.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(&path),
        Err(source) => Err(KeyError::Io { path, source }),
    }
}

/// A missing key file as `NotFound`, other errors as they are.
fn not_found(err: KeyError, key_id: &str) -> KeyError {
    match err {
        KeyError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            KeyError::NotFound {
                key_id: key_id.to_owned(),
            }
        }
        other => other,
    }
}

/// Creates a key directory 0700 if needed and refuses one that group or others can enter.
fn private_dir(dir: &Path) -> Result<(), KeyError> {
    let dir_err = |source| KeyError::Dir {
        path: dir.to_owned(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(dir_err)?;
    if fs::metadata(dir).map_err(dir_err)?.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::DirPermissions {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| KeyError::Dir {
            path: dir.to_owned(),
            source,
        })
}

/// A key that does not rotate with the epochs, for lists that must recognise a number in any
/// epoch (the suppression list). Same file rules as the epoch keys: 0600 in a 0700 directory.
pub struct StandingKey(Secret);

impl fmt::Debug for StandingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StandingKey(…)")
    }
}

impl StandingKey {
    /// Opens `<dir>/<name>.key`, generating it on first use.
    pub fn open(dir: &Path, name: &str) -> Result<Self, KeyError> {
        private_dir(dir)?;
        load_or_create(dir, name).map(Self)
    }

    /// The keyed hash of `input` for `purpose` (32 lowercase hex characters).
    pub fn derive(&self, purpose: Purpose, input: &[u8]) -> String {
        self.0.1.derive(purpose, input)
    }
}

fn read_key(path: &Path) -> Result<Secret, KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(KeyError::Corrupt {
            path: path.to_owned(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    file.take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| KeyError::Corrupt {
        path: path.to_owned(),
    })?;
    bytes.fill(0);
    Ok(Secret::new(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn ring(dir: &Path) -> Keyring {
        Keyring::open_at(dir, Rotation::Monthly, at(2026, 11, 24)).unwrap()
    }

    #[test]
    fn open_creates_dir_0700_and_current_key_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let _ring = ring(&dir);
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let key = dir.join("2026-11.key");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read(&key).unwrap().len(), 32);
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp files must not remain");
    }

    #[test]
    fn group_readable_key_is_refused_naming_the_file_and_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        drop(ring(&dir));
        let key = dir.join("2026-11.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Keyring::open_at(&dir, Rotation::Monthly, at(2026, 11, 24)).unwrap_err();
        assert!(matches!(err, KeyError::Permissions { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&key.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
    }

    #[test]
    fn world_accessible_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = Keyring::open_at(&dir, Rotation::Monthly, at(2026, 11, 24)).unwrap_err();
        assert!(matches!(err, KeyError::DirPermissions { .. }), "{err:?}");
        assert!(err.to_string().contains("chmod 700"));
    }

    #[test]
    fn truncated_key_is_refused_as_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        drop(ring(&dir));
        fs::write(dir.join("2026-11.key"), [1; 31]).unwrap();
        let err = Keyring::open_at(&dir, Rotation::Monthly, at(2026, 11, 24)).unwrap_err();
        assert!(matches!(err, KeyError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn same_input_same_epoch_gives_same_pseudonym_across_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let a = ring(&dir)
            .pseudonymize(Purpose::Caller, b"+4930123456", at(2026, 11, 3))
            .unwrap();
        let b = ring(&dir)
            .pseudonymize(Purpose::Caller, b"+4930123456", at(2026, 11, 28))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.key_id, "2026-11");
        assert_eq!(a.value.len(), 32);
    }

    #[test]
    fn different_purpose_gives_different_value() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        let t = at(2026, 11, 24);
        let caller = r.pseudonymize(Purpose::Caller, b"x", t).unwrap();
        let call = r.pseudonymize(Purpose::CallKey, b"x", t).unwrap();
        assert_eq!(caller.key_id, call.key_id);
        assert_ne!(caller.value, call.value);
    }

    #[test]
    fn month_boundary_rotates_to_a_new_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        let end = Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let a = r
            .pseudonymize(Purpose::Caller, b"+4930123456", end)
            .unwrap();
        let b = r
            .pseudonymize(Purpose::Caller, b"+4930123456", start)
            .unwrap();
        assert_eq!(
            (a.key_id.as_str(), b.key_id.as_str()),
            ("2026-11", "2026-12")
        );
        assert_ne!(a.value, b.value);
        assert!(dir.join("2026-12.key").exists());
    }

    #[test]
    fn shred_makes_the_epoch_pseudonymize_differently() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        let old = at(2026, 10, 5);
        let before = r
            .pseudonymize(Purpose::Caller, b"+4930123456", old)
            .unwrap();
        r.shred_at("2026-10", false, at(2026, 11, 24)).unwrap();
        assert!(!dir.join("2026-10.key").exists());
        let after = r
            .pseudonymize(Purpose::Caller, b"+4930123456", old)
            .unwrap();
        assert_eq!(before.key_id, after.key_id);
        assert_ne!(before.value, after.value);
    }

    #[test]
    fn shred_refuses_current_epoch_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        let now = at(2026, 11, 24);
        assert!(matches!(
            r.shred_at("2026-11", false, now),
            Err(KeyError::CurrentEpoch)
        ));
        assert!(dir.join("2026-11.key").exists());
        r.shred_at("2026-11", true, now).unwrap();
        assert!(!dir.join("2026-11.key").exists());
    }

    #[test]
    fn shred_refuses_names_that_are_not_key_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        for bad in ["../x", "2026-11.key", "", "keys"] {
            assert!(matches!(
                r.shred_at(bad, true, at(2026, 11, 24)),
                Err(KeyError::InvalidKeyId)
            ));
        }
        assert!(matches!(
            r.shred_at("2020-01", false, at(2026, 11, 24)),
            Err(KeyError::NotFound { .. })
        ));
    }

    #[test]
    fn prune_keeps_newest_epochs_and_the_current_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        for m in 7..=10 {
            r.pseudonymize(Purpose::Record, b"r", at(2026, m, 1))
                .unwrap();
        }
        let ids = |r: &Keyring| {
            r.list()
                .unwrap()
                .into_iter()
                .map(|k| k.key_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&r),
            ["2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
        );
        let shredded = r.prune_at(2, at(2026, 11, 24)).unwrap();
        assert_eq!(shredded, ["2026-07", "2026-08", "2026-09"]);
        assert_eq!(ids(&r), ["2026-10", "2026-11"]);
        assert!(
            r.prune_at(0, at(2026, 11, 24))
                .unwrap()
                .contains(&"2026-10".to_owned())
        );
        assert_eq!(ids(&r), ["2026-11"]);
    }

    #[test]
    fn no_key_is_created_for_an_epoch_after_the_current_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        let now = at(2026, 11, 24);
        for future in [at(2026, 12, 1), at(2099, 1, 1)] {
            assert!(matches!(
                r.pseudonymize_at(Purpose::Caller, b"x", future, now),
                Err(KeyError::FutureEpoch)
            ));
        }
        assert!(!dir.join("2026-12.key").exists() && !dir.join("2099-01.key").exists());
        // Later in the current epoch and any past one are fine.
        r.pseudonymize_at(Purpose::Caller, b"x", at(2026, 11, 30), now)
            .unwrap();
        r.pseudonymize_at(Purpose::Caller, b"x", at(2025, 3, 1), now)
            .unwrap();
        assert!(dir.join("2025-03.key").exists());
    }

    #[test]
    fn future_keys_on_disk_do_not_make_prune_shred_current_or_recent_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let now = at(2026, 11, 24);
        // Keys an earlier version made from CDRs dated 2099: as if the clock had said so.
        for y in [2097, 2098, 2099] {
            drop(Keyring::open_at(&dir, Rotation::Monthly, at(y, 1, 1)).unwrap());
        }
        let r = ring(&dir);
        for m in 8..=10 {
            r.pseudonymize_at(Purpose::Record, b"r", at(2026, m, 1), now)
                .unwrap();
        }
        let shredded = r.prune_at(2, now).unwrap();
        assert_eq!(shredded, ["2026-08", "2026-09"]);
        let left: Vec<String> = r.list().unwrap().into_iter().map(|k| k.key_id).collect();
        assert_eq!(
            left,
            ["2026-10", "2026-11", "2097-01", "2098-01", "2099-01"],
            "current and recent kept; future ones neither counted nor shredded"
        );
    }

    #[test]
    fn read_only_open_creates_neither_directory_nor_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = Keyring::open_read_only(&dir, Rotation::Monthly).unwrap();
        assert!(r.list().unwrap().is_empty());
        assert!(!dir.exists());
        drop(ring(&dir));
        let before = fs::read(dir.join("2026-11.key")).unwrap();
        let r = Keyring::open_read_only(&dir, Rotation::Monthly).unwrap();
        assert!(matches!(
            r.pseudonymize(Purpose::Caller, b"x", at(2026, 10, 1)),
            Err(KeyError::NotFound { .. })
        ));
        let p = r.pseudonym_under(Purpose::Caller, b"x", "2026-11").unwrap();
        let w = ring(&dir)
            .pseudonymize_at(Purpose::Caller, b"x", at(2026, 11, 2), at(2026, 11, 24))
            .unwrap();
        assert_eq!(p, w);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "nothing new on disk"
        );
        assert_eq!(fs::read(dir.join("2026-11.key")).unwrap(), before);
        assert!(matches!(
            r.pseudonym_under(Purpose::Caller, b"x", "2026-09"),
            Err(KeyError::NotFound { .. })
        ));
    }

    #[test]
    fn concurrent_opens_agree_on_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let values: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        ring(&dir)
                            .pseudonymize(Purpose::Caller, b"x", at(2026, 11, 24))
                            .unwrap()
                            .value
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp files left");
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let r = ring(&dir);
        let key = fs::read(dir.join("2026-11.key")).unwrap();
        let shown = format!("{r:?} {:?}", Secret::new([0xab; 32]));
        assert!(!shown.contains(&hex::encode(&key)));
        assert!(
            !shown.contains("abab") && shown.contains("Secret(…)"),
            "{shown}"
        );
        assert!(shown.contains("2026-11"));
    }
}
