//! Joins a CDR row to the SIP-side view of the same call, so `call.completed` carries the call key,
//! campaign and consent the SIP edge recorded. Two ways in: the carrier exports the SIP Call-ID
//! (exact, by its keyed call key), or it does not (heuristic: tracking number + a keyed hash of
//! the caller + start time within a tolerance).
//!
//! The index holds only keyed hashes, is bounded in entries and age, and is kept in the data
//! directory across restarts. The caller hash is kept even for callers who objected: it is how a
//! CDR row learns of the objection and drops its own identifier (GDPR Art. 21 honoured, not
//! circumvented); it expires with the index.
//!
//! Each entry remembers what the SIP side decided about the caller ([`CallerState`]), so a CDR
//! row that carries the real A-number of a withheld (CLIR) or uninformed caller cannot identify
//! them: the join follows the SIP side's decision, never the row's number. Withheld calls are
//! indexed under a keyed hash of the tracking number alone, so a row without a Call-ID still
//! finds a withheld call at its number and time and stays withheld.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::data_dir::DataDir;

use super::{Consent, Disclosure};

/// What the SIP side's events said about the caller; a CDR row of the same call says no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerState {
    /// The events carry the caller's pseudonym.
    Identified,
    /// The caller's number was known but not kept (not informed, objected, policy `drop`).
    Unidentified,
    /// The caller withheld their number (CLIR, `Privacy: id`, anonymous From).
    Withheld,
}

/// What the SIP side knew about a call. Campaign and tracking number are not kept: the CDR row
/// names its tracking number, and the key epoch follows from `offered_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The call key (32 hex digits).
    pub call_key: String,
    /// Keyed hash of tracking number and caller (`Purpose::Record`); for a withheld caller, of
    /// the tracking number and a fixed marker.
    pub match_key: Option<String>,
    pub consent: Option<Consent>,
    pub disclosure: Disclosure,
    pub offered_at: DateTime<Utc>,
    /// Absent in indexes written before it existed: read as withheld when there is no match
    /// key (withheld calls had none), else as unidentified; never as identified.
    #[serde(default)]
    pub caller: Option<CallerState>,
}

impl Entry {
    pub fn caller_state(&self) -> CallerState {
        self.caller.unwrap_or(if self.match_key.is_none() {
            CallerState::Withheld
        } else {
            CallerState::Unidentified
        })
    }
}

/// An entry as held in memory: hashes as integers, so a busy trunk's two days of calls fit in
/// a few tens of bytes each.
#[derive(Debug, Clone, Copy)]
struct Compact {
    match_key: Option<u128>,
    consent: Option<Consent>,
    disclosure: Disclosure,
    offered_at: DateTime<Utc>,
    caller: CallerState,
}

fn hash(hex: &str) -> Option<u128> {
    u128::from_str_radix(hex, 16)
        .ok()
        .filter(|_| hex.len() == 32)
}

fn hex(v: u128) -> String {
    format!("{v:032x}")
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub capacity: usize,
    pub max_age: TimeDelta,
}

#[derive(Default)]
struct Index {
    by_call_key: HashMap<u128, Compact>,
    by_match: HashMap<u128, Vec<u128>>,
    order: VecDeque<(DateTime<Utc>, u128)>,
}

pub struct Correlator {
    index: Mutex<Index>,
    path: PathBuf,
    limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum CorrelateError {
    #[error("cannot write the correlation index {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl Correlator {
    /// Loads `<data_dir>/cdr/correlation.jsonl` if present; unreadable lines are skipped (the
    /// index is a cache of joins, never a source of events).
    pub fn open(data_dir: &Path, limits: Limits, now: DateTime<Utc>) -> Self {
        let path = DataDir::new(data_dir).correlation_index();
        // A crash mid-persist leaves a temp copy of these keyed hashes that no later persist
        // would replace; it must not outlive the index's own expiry. Both openers (the daemon,
        // `cdr import`) hold the outbox lock by now, so no other process is persisting.
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        {
            // The fixed temp name of earlier versions.
            let _ = std::fs::remove_file(path.with_extension("jsonl.tmp"));
            if crate::atomic::remove_leftovers(dir, name).is_err() {
                tracing::warn!("Leftover correlation index temp files could not be removed.");
            }
        }
        let this = Self {
            index: Mutex::new(Index::default()),
            path,
            limits,
        };
        if let Ok(file) = std::fs::File::open(&this.path) {
            for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                    this.insert(entry, now);
                }
            }
        }
        this
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a call the SIP edge recorded.
    pub fn insert(&self, entry: Entry, now: DateTime<Utc>) {
        let Some(call_key) = hash(&entry.call_key) else {
            return;
        };
        if entry.offered_at < now - self.limits.max_age {
            return;
        }
        let match_key = entry.match_key.as_deref().and_then(hash);
        let mut index = self.lock();
        if let Some(key) = match_key {
            index.by_match.entry(key).or_default().push(call_key);
        }
        index.order.push_back((entry.offered_at, call_key));
        let compact = Compact {
            match_key,
            consent: entry.consent,
            disclosure: entry.disclosure,
            offered_at: entry.offered_at,
            caller: entry.caller_state(),
        };
        index.by_call_key.insert(call_key, compact);
        Self::evict(&mut index, self.limits, now);
    }

    fn evict(index: &mut Index, limits: Limits, now: DateTime<Utc>) {
        while let Some((at, key)) = index.order.front().copied() {
            if index.order.len() <= limits.capacity && at >= now - limits.max_age {
                break;
            }
            index.order.pop_front();
            if let Some(entry) = index.by_call_key.remove(&key)
                && let Some(match_key) = entry.match_key
                && let Some(keys) = index.by_match.get_mut(&match_key)
            {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    index.by_match.remove(&match_key);
                }
            }
        }
    }

    /// The SIP call with this call key.
    pub fn by_call_key(&self, call_key: &str) -> Option<Entry> {
        let key = hash(call_key)?;
        self.lock().by_call_key.get(&key).map(|c| expand(key, c))
    }

    /// The SIP call with this caller/tracking hash whose offer is nearest `start`, within
    /// `tolerance`.
    pub fn by_heuristic(
        &self,
        match_key: &str,
        start: DateTime<Utc>,
        tolerance: TimeDelta,
    ) -> Option<Entry> {
        let match_key = hash(match_key)?;
        let index = self.lock();
        index
            .by_match
            .get(&match_key)?
            .iter()
            .filter_map(|k| index.by_call_key.get(k).map(|c| (*k, c)))
            .filter(|(_, c)| (c.offered_at - start).abs() <= tolerance)
            .min_by_key(|(_, c)| (c.offered_at - start).abs())
            .map(|(k, c)| expand(k, c))
    }

    /// Forgets every call indexed under one of `match_keys` (a data subject's erasure);
    /// returns how many.
    pub fn forget(&self, match_keys: &[String]) -> usize {
        let mut index = self.lock();
        let mut removed = 0;
        for key in match_keys.iter().filter_map(|k| hash(k)) {
            for call_key in index.by_match.remove(&key).unwrap_or_default() {
                if index.by_call_key.remove(&call_key).is_some() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            let Index {
                by_call_key, order, ..
            } = &mut *index;
            order.retain(|(_, k)| by_call_key.contains_key(k));
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.lock().by_call_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the index atomically (`atomic::replace_with`: temp file, fsync, rename, fsync of
    /// the directory).
    pub fn persist(&self) -> Result<(), CorrelateError> {
        let err = |source| CorrelateError::Write {
            path: self.path.display().to_string(),
            source,
        };
        let entries: Vec<Entry> = {
            let index = self.lock();
            index
                .order
                .iter()
                .filter_map(|(_, k)| index.by_call_key.get(k).map(|c| expand(*k, c)))
                .collect()
        };
        let (Some(dir), Some(name)) = (
            self.path.parent(),
            self.path.file_name().and_then(|n| n.to_str()),
        ) else {
            return Err(err(std::io::ErrorKind::InvalidInput.into()));
        };
        // 0700 as the CDR state beside it (checkpoints, quarantine), whoever creates `cdr/` first.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(err)?;
        // 0600: keyed hashes of callers, not for the group that may read the data directory.
        crate::atomic::replace_with(dir, name, 0o600, |w| {
            for entry in entries {
                if let Ok(line) = serde_json::to_string(&entry) {
                    writeln!(w, "{line}")?;
                }
            }
            Ok(())
        })
        .map_err(err)
    }
}

fn expand(call_key: u128, c: &Compact) -> Entry {
    Entry {
        call_key: hex(call_key),
        match_key: c.match_key.map(hex),
        consent: c.consent,
        disclosure: c.disclosure,
        offered_at: c.offered_at,
        caller: Some(c.caller),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 32-hex-digit stand-in for a keyed hash, from a short label.
    fn h(label: &str) -> String {
        format!(
            "{:0>32}",
            label
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }

    fn entry(key: &str, match_key: Option<&str>, at: DateTime<Utc>) -> Entry {
        Entry {
            call_key: h(key),
            match_key: match_key.map(h),
            consent: Some(Consent::Informed),
            disclosure: Disclosure::Played,
            offered_at: at,
            caller: Some(CallerState::Identified),
        }
    }

    fn limits() -> Limits {
        Limits {
            capacity: 3,
            max_age: TimeDelta::hours(48),
        }
    }

    #[test]
    fn exact_and_heuristic_lookups_find_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let c = Correlator::open(dir.path(), limits(), now);
        c.insert(entry("a", Some("m"), now), now);
        c.insert(entry("b", Some("m"), now - TimeDelta::minutes(30)), now);
        assert_eq!(c.by_call_key(&h("a")).unwrap().call_key, h("a"));
        let near = c
            .by_heuristic(
                &h("m"),
                now - TimeDelta::seconds(20),
                TimeDelta::seconds(120),
            )
            .unwrap();
        assert_eq!(near.call_key, h("a"));
        assert!(
            c.by_heuristic(
                &h("m"),
                now - TimeDelta::minutes(10),
                TimeDelta::seconds(120)
            )
            .is_none()
        );
    }

    #[test]
    fn index_is_bounded_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let c = Correlator::open(dir.path(), limits(), now);
        for k in ["a", "b", "c", "d"] {
            c.insert(entry(k, Some(k), now), now);
        }
        c.insert(entry("old", None, now - TimeDelta::hours(49)), now);
        assert_eq!(c.len(), 3, "capacity 3, expired entry refused");
        assert!(c.by_call_key(&h("a")).is_none(), "oldest evicted");
        assert!(
            c.by_heuristic(&h("a"), now, TimeDelta::seconds(1))
                .is_none()
        );
        c.persist().unwrap();
        let again = Correlator::open(dir.path(), limits(), now);
        assert_eq!(again.len(), 3);
        assert!(again.by_call_key(&h("d")).is_some());
    }

    #[test]
    fn the_index_is_private_and_a_crash_leaves_no_copy() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let c = Correlator::open(dir.path(), limits(), now);
        c.insert(entry("a", Some("a"), now), now);
        c.persist().unwrap();
        let cdr = dir.path().join("cdr");
        let index = cdr.join("correlation.jsonl");
        let mode = std::fs::metadata(&index).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "keyed hashes, whatever the umask");
        let dir_mode = std::fs::metadata(&cdr).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700, "cdr/ as private as the CDR state in it");
        // What a crash mid-persist leaves, in this version's and the earlier temp name.
        std::fs::write(cdr.join(".correlation.jsonl.0123abcd.tmp"), b"x").unwrap();
        std::fs::write(cdr.join("correlation.jsonl.tmp"), b"x").unwrap();
        let again = Correlator::open(dir.path(), limits(), now);
        assert_eq!(again.len(), 1);
        let names: Vec<_> = std::fs::read_dir(&cdr)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["correlation.jsonl"]);
    }

    #[test]
    fn old_entries_never_read_as_identified_and_forget_drops_a_caller() {
        let old: Entry = serde_json::from_str(&format!(
            r#"{{"call_key":"{}","match_key":null,"consent":null,"disclosure":"played","offered_at":"2026-12-01T10:00:00Z"}}"#,
            h("a")
        ))
        .unwrap();
        assert_eq!(old.caller_state(), CallerState::Withheld);
        let mut with_key = old.clone();
        with_key.match_key = Some(h("m"));
        assert_eq!(with_key.caller_state(), CallerState::Unidentified);

        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let c = Correlator::open(dir.path(), limits(), now);
        c.insert(entry("a", Some("m"), now), now);
        c.insert(entry("b", Some("n"), now), now);
        assert_eq!(c.forget(&[h("m"), h("zz")]), 1);
        assert!(c.by_call_key(&h("a")).is_none());
        assert!(c.by_call_key(&h("b")).is_some());
        assert_eq!(c.len(), 1);
    }
}
