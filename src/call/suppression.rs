//! The suppression list: callers who objected (GDPR Art. 21) or whose data is restricted
//! (Art. 18), remembered so their later calls are honoured without asking again.
//!
//! It holds keyed hashes only, under a standing key of its own: pseudonym keys rotate (and are
//! shredded), and a later call in any epoch must still be recognised. Each entry expires after
//! the configured retention; an objection is renewed when the same caller objects again. The
//! file is small (one line per person who objected) and rewritten whole, atomically, on every
//! change, so a crash leaves either the old or the new list.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::keyring::StandingKey;
use super::{E164, KeyError, Purpose};

/// What the list says about one caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub objected: bool,
    pub restricted: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Marks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    objected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restricted_at: Option<DateTime<Utc>>,
}

impl Marks {
    fn is_empty(&self) -> bool {
        self.objected_at.is_none() && self.restricted_at.is_none()
    }
}

/// One line of the file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    hash: String,
    #[serde(flatten)]
    marks: Marks,
}

#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    #[error("suppression key")]
    Key(#[from] KeyError),
    #[error("cannot write the suppression list {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Suppression {
    key: StandingKey,
    path: PathBuf,
    retention: TimeDelta,
    entries: Mutex<HashMap<String, Marks>>,
}

impl std::fmt::Debug for Suppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppression")
            .field("path", &self.path)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Suppression {
    /// Opens `<dir>/suppression.jsonl` and its key `<dir>/suppression.key`; lines that do not
    /// parse are dropped (the next write leaves them out), expired entries are purged.
    pub fn open(
        dir: &Path,
        retention: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Self, SuppressionError> {
        let key = StandingKey::open(dir, "suppression")?;
        let path = dir.join("suppression.jsonl");
        let mut entries = HashMap::new();
        if let Ok(file) = std::fs::File::open(&path) {
            for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(line) = serde_json::from_str::<Line>(&line) {
                    entries.insert(line.hash, line.marks);
                }
            }
        }
        let this = Self {
            key,
            path,
            retention,
            entries: Mutex::new(entries),
        };
        this.purge(now)?;
        Ok(this)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Marks>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hash(&self, number: &E164) -> String {
        self.key
            .derive(Purpose::Suppression, number.as_str().as_bytes())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `number` objected earlier or is restricted, as of `now`.
    pub fn standing(&self, number: &E164, now: DateTime<Utc>) -> Standing {
        let live = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t + self.retention > now);
        self.lock()
            .get(&self.hash(number))
            .map(|m| Standing {
                objected: live(m.objected_at),
                restricted: live(m.restricted_at),
            })
            .unwrap_or_default()
    }

    /// Records an objection (renewing an earlier one).
    pub fn object(&self, number: &E164, now: DateTime<Utc>) -> Result<(), SuppressionError> {
        self.change(number, |m| m.objected_at = Some(now))
    }

    /// Restricts processing of `number`'s data until [`Suppression::unrestrict`].
    pub fn restrict(&self, number: &E164, now: DateTime<Utc>) -> Result<(), SuppressionError> {
        self.change(number, |m| m.restricted_at = Some(now))
    }

    pub fn unrestrict(&self, number: &E164) -> Result<(), SuppressionError> {
        self.change(number, |m| m.restricted_at = None)
    }

    /// Forgets everything about `number` (erasure). Returns whether there was an entry.
    pub fn erase(&self, number: &E164) -> Result<bool, SuppressionError> {
        let hash = self.hash(number);
        let removed = self.lock().remove(&hash).is_some();
        if removed {
            self.persist()?;
        }
        Ok(removed)
    }

    /// Drops entries whose marks are all older than the retention; returns how many.
    pub fn purge(&self, now: DateTime<Utc>) -> Result<usize, SuppressionError> {
        let expired = |t: &mut Option<DateTime<Utc>>| {
            if t.is_some_and(|t| t + self.retention <= now) {
                *t = None;
            }
        };
        let removed = {
            let mut entries = self.lock();
            let before = entries.len();
            for marks in entries.values_mut() {
                expired(&mut marks.objected_at);
                expired(&mut marks.restricted_at);
            }
            entries.retain(|_, m| !m.is_empty());
            before - entries.len()
        };
        if removed > 0 {
            self.persist()?;
        }
        Ok(removed)
    }

    fn change(&self, number: &E164, f: impl FnOnce(&mut Marks)) -> Result<(), SuppressionError> {
        let hash = self.hash(number);
        {
            let mut entries = self.lock();
            let marks = entries.entry(hash.clone()).or_default();
            f(marks);
            if marks.is_empty() {
                entries.remove(&hash);
            }
        }
        self.persist()
    }

    /// Replaces the list file whole (0600), so a crash leaves the old or the new list.
    fn persist(&self) -> Result<(), SuppressionError> {
        let mut text = Vec::new();
        for (hash, marks) in self.lock().iter() {
            let line = Line {
                hash: hash.clone(),
                marks: *marks,
            };
            if let Ok(json) = serde_json::to_vec(&line) {
                text.extend_from_slice(&json);
                text.push(b'\n');
            }
        }
        let (dir, name) = (self.path.parent(), self.path.file_name());
        let (Some(dir), Some(name)) = (dir, name.and_then(|n| n.to_str())) else {
            return Ok(());
        };
        crate::atomic::replace(dir, name, &text, 0o600).map_err(|source| SuppressionError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::os::unix::fs::PermissionsExt;

    fn number(n: &str) -> E164 {
        n.parse().unwrap()
    }

    #[test]
    fn an_objection_is_recognised_after_a_restart_and_expires() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = &tmp.path().join("privacy");
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let list = Suppression::open(dir, TimeDelta::days(30), t0).unwrap();
        let caller = number("+4917612345678");
        assert_eq!(list.standing(&caller, t0), Standing::default());
        list.object(&caller, t0).unwrap();
        drop(list);

        let later = t0 + TimeDelta::days(29);
        let list = Suppression::open(dir, TimeDelta::days(30), later).unwrap();
        assert!(list.standing(&caller, later).objected);
        assert!(!list.standing(&number("+4917600000000"), later).objected);
        let text = std::fs::read_to_string(dir.join("suppression.jsonl")).unwrap();
        assert!(!text.contains("17612345678"), "keyed hashes only: {text}");
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode("suppression.jsonl"), mode("suppression.key")),
            (0o600, 0o600)
        );

        let expired = t0 + TimeDelta::days(31);
        assert!(!list.standing(&caller, expired).objected);
        assert_eq!(list.purge(expired).unwrap(), 1);
        assert!(list.is_empty());
    }

    #[test]
    fn restriction_is_lifted_and_erase_forgets_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = &tmp.path().join("privacy");
        let now = Utc::now();
        let list = Suppression::open(dir, TimeDelta::days(30), now).unwrap();
        let caller = number("+4930123456");
        list.restrict(&caller, now).unwrap();
        list.object(&caller, now).unwrap();
        assert_eq!(
            list.standing(&caller, now),
            Standing {
                objected: true,
                restricted: true
            }
        );
        list.unrestrict(&caller).unwrap();
        assert!(!list.standing(&caller, now).restricted);
        assert!(list.erase(&caller).unwrap());
        assert!(!list.erase(&caller).unwrap());
        let again = Suppression::open(dir, TimeDelta::days(30), now).unwrap();
        assert_eq!(again.standing(&caller, now), Standing::default());
    }
}
