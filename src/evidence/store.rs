//! The writer's side of the day files: recover a day's chain from its file, append entries,
//! fsync, and re-seal what changed.
//!
//! The replay rule: the writer commits its outbox reader only after a round's lines are fsynced
//! and sealed, and a round reads at most `REPLAY_WINDOW` records. After a crash the reader
//! therefore re-reads at most one round, whose lines may already be in the files; while the first
//! round after opening runs, an event whose id is among the last `REPLAY_WINDOW` lines of its day
//! is not written again. A torn last line (a crash inside write(2)) belongs to that round too and
//! is cut before the day is extended.
//!
//! A day is extended only when its file verifies (an unsealed tail is fine: the crash came
//! between append and seal). One that does not is left exactly as found and never re-sealed, so
//! the daemon cannot sign over a rewritten day; its new disclosures are counted as refused.

use std::collections::btree_map::Entry as Slot;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use chrono::NaiveDate;
use ed25519_dalek::{SigningKey, VerifyingKey};
use uuid::Uuid;

use super::layout::{Layout, day_name, read_optional};
use super::verify::check_with;
use super::{Chain, Entry, EvidenceError, Seal, line, open_signing_key};
use crate::call::CallEvent;
use crate::outbox::Record;
use crate::sink::Meta;

/// Records one round reads at most; also how far back a replay can reach into a day file.
pub(super) const REPLAY_WINDOW: usize = 20_000;
/// Days whose chain is kept in memory (a day boundary touches two); older ones are re-read
/// from their file if a late disclosure arrives.
const DAYS_KEPT: usize = 3;

/// What one round did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Round {
    pub lines: u64,
    pub seals: u64,
    pub duplicates: u64,
    pub skipped: u64,
    pub refused: u64,
    pub torn_lines_cut: u64,
}

struct Day {
    /// `None` when the file did not verify: never extended or sealed by this process.
    file: Option<File>,
    chain: Chain,
    /// Encoded lines of this round, written at its end.
    pending: Vec<u8>,
    /// Lines were added since the seal was written (or a recovered tail was never sealed).
    dirty: bool,
    /// Event ids of the day's last `REPLAY_WINDOW` lines, while replaying.
    recent: HashSet<Uuid>,
}

/// The day files under one evidence directory. After an `Err` from `apply` the store must be
/// dropped (its chains may be ahead of the files); a new one recovers from disk.
pub(super) struct Store {
    layout: Layout,
    key: SigningKey,
    public: VerifyingKey,
    days: BTreeMap<NaiveDate, Day>,
    replay: bool,
}

impl Store {
    /// Creates the directory and the signing key if needed.
    pub fn open(layout: Layout) -> Result<Store, EvidenceError> {
        layout.create()?;
        let key = open_signing_key(&layout)?;
        Ok(Store {
            public: key.verifying_key(),
            key,
            layout,
            days: BTreeMap::new(),
            replay: true,
        })
    }

    /// The first round after the reader opened is committed: no record can be re-read now.
    pub fn end_replay(&mut self) {
        self.replay = false;
        for day in self.days.values_mut() {
            day.recent = HashSet::new();
        }
    }

    /// Appends the evidence of the `call.disclosed` events among `records`, fsyncs, and re-seals
    /// every day that changed.
    pub fn apply(&mut self, records: &[Record]) -> Result<Round, EvidenceError> {
        let mut round = Round::default();
        for record in records {
            if !is_disclosed(&record.line) {
                continue;
            }
            let Ok(event) = serde_json::from_slice::<CallEvent>(&record.line) else {
                round.skipped += 1;
                continue;
            };
            let Some((date, entry)) = Entry::of(&event) else {
                continue;
            };
            let replay = self.replay;
            let day = self.day(date, &mut round)?;
            if day.file.is_none() {
                round.refused += 1;
            } else if replay && day.recent.contains(&entry.event_id) {
                round.duplicates += 1;
            } else {
                let canonical = entry.canonical();
                let link = day.chain.push(&canonical);
                day.pending.extend(line::encode(&canonical, &link));
                day.dirty = true;
                round.lines += 1;
            }
        }
        for (&date, day) in &mut self.days {
            if !day.pending.is_empty()
                && let Some(file) = day.file.as_mut()
            {
                file.write_all(&day.pending)
                    .and_then(|()| file.sync_data())
                    .map_err(EvidenceError::io(self.layout.day_file(date)))?;
                day.pending.clear();
            }
            if day.dirty {
                let seal = Seal::sign(&day_name(date), &day.chain, &self.key);
                let name = Layout::seal_name(date);
                crate::atomic::replace(self.layout.dir(), &name, &seal.to_bytes(), 0o600)
                    .map_err(EvidenceError::io(self.layout.seal_file(date)))?;
                day.dirty = false;
                round.seals += 1;
            }
        }
        while self.days.len() > DAYS_KEPT {
            self.days.pop_first();
        }
        Ok(round)
    }

    /// The day's state, recovered from its files on first use.
    fn day(&mut self, date: NaiveDate, round: &mut Round) -> Result<&mut Day, EvidenceError> {
        Ok(match self.days.entry(date) {
            Slot::Occupied(day) => day.into_mut(),
            Slot::Vacant(slot) => slot.insert(recover(
                &self.layout,
                &self.public,
                self.replay,
                date,
                round,
            )?),
        })
    }
}

/// Reads a day's files: its chain to continue from, whether it may be extended, and (while
/// replaying) the ids of its last lines.
fn recover(
    layout: &Layout,
    public: &VerifyingKey,
    replay: bool,
    date: NaiveDate,
    round: &mut Round,
) -> Result<Day, EvidenceError> {
    let path = layout.day_file(date);
    let bytes = read_optional(&path)?.unwrap_or_default();
    let seal = read_optional(&layout.seal_file(date))?;
    let mut recent = VecDeque::new();
    let (verdict, walk) = check_with(date, &bytes, seal.as_deref(), public, |e| {
        if replay {
            recent.push_back(e.event_id);
            if recent.len() > REPLAY_WINDOW {
                recent.pop_front();
            }
        }
    });
    let (chain, file) = match walk {
        Some(walk) if verdict.extendable() => {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(EvidenceError::io(&path))?;
            if walk.complete < bytes.len() {
                file.set_len(walk.complete as u64)
                    .map_err(EvidenceError::io(&path))?;
                round.torn_lines_cut += 1;
            }
            (walk.chain, Some(file))
        }
        _ => {
            tracing::error!(
                day = %day_name(date),
                verdict = %verdict,
                "Evidence day file does not verify; it is neither extended nor sealed again."
            );
            (Chain::default(), None)
        }
    };
    Ok(Day {
        dirty: file.is_some() && chain.count > 0 && !verdict.is_ok(),
        file,
        chain,
        pending: Vec::new(),
        recent: recent.into_iter().collect(),
    })
}

/// Reads only `event_type` (the forwarder's own few-fields reader), so the other event types
/// cost no full parse.
fn is_disclosed(line: &[u8]) -> bool {
    serde_json::from_slice::<Meta>(line)
        .ok()
        .and_then(|m| m.event_type)
        .is_some_and(|t| t == "call.disclosed")
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::call::{
        CallerFields, Common, Consent, Disclosed, Disclosure, Hook, Outcome, Seconds,
    };
    use crate::evidence::{Verdict, check};
    use crate::outbox::Position;

    pub(in super::super) const CALL_KEY: &str = "0123456789abcdef0123456789abcdef";
    pub(in super::super) const PSEUDONYM: &str = "fedcba9876543210fedcba9876543210";

    fn at(day: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 23, 59, second).unwrap()
    }

    /// The outbox line of one announced call's three events; the middle one is disclosed.
    pub(in super::super) fn call(occurred: DateTime<Utc>, outcome: Outcome) -> Vec<Vec<u8>> {
        let common = Common::new(
            occurred,
            crate::call::Pseudonym {
                key_id: "2026-11".to_owned(),
                value: CALL_KEY.to_owned(),
            },
            "spring-sale",
            "+4930901820".parse().unwrap(),
            CallerFields {
                pseudonym: Some(PSEUDONYM.to_owned()),
                withheld: false,
                region: Some("+49 89".to_owned()),
                restricted: false,
            },
            Disclosure::Played,
            Some(Consent::Informed),
        );
        let disclosed = Disclosed {
            announcement_id: "notice".to_owned(),
            announcement_version: "v1".to_owned(),
            hook: Hook::EarlyMedia,
            played: Seconds::from_tenths(43),
            complete: outcome == Outcome::Complete,
            recording_sha256: "cd".repeat(32),
            outcome,
        };
        vec![
            CallEvent::offered(common.clone()).to_json_line(),
            CallEvent::disclosed(common.clone(), disclosed).to_json_line(),
            CallEvent::routed(common).to_json_line(),
        ]
    }

    fn records(lines: &[Vec<u8>], first: u64) -> Vec<Record> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| Record {
                position: Position(first + i as u64),
                line: Bytes::from(l.clone()),
            })
            .collect()
    }

    fn open(tmp: &tempfile::TempDir) -> (Layout, Store) {
        let layout = Layout::new(tmp.path());
        (layout.clone(), Store::open(layout).unwrap())
    }

    /// A day with one sealed line, written by a store that is gone again (a stopped daemon).
    fn one_sealed_call(tmp: &tempfile::TempDir) -> Layout {
        let (layout, mut store) = open(tmp);
        store
            .apply(&records(&call(at(24, 1), Outcome::Complete), 0))
            .unwrap();
        layout
    }

    fn verdict(layout: &Layout, date: NaiveDate) -> Verdict {
        let key = crate::evidence::read_public_key(&layout.public_key()).unwrap();
        let file = std::fs::read(layout.day_file(date)).unwrap_or_default();
        let seal = read_optional(&layout.seal_file(date)).unwrap();
        check(date, &file, seal.as_deref(), &key)
    }

    fn nov(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    #[test]
    fn disclosures_become_sealed_lines_of_their_utc_day_without_caller_data() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, mut store) = open(&tmp);
        let mut lines = call(at(24, 1), Outcome::Complete);
        lines.extend(call(at(24, 2), Outcome::HungUp));
        let tomorrow = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 1).unwrap();
        lines.extend(call(tomorrow, Outcome::Objected));
        let round = store.apply(&records(&lines, 0)).unwrap();
        assert_eq!((round.lines, round.seals), (3, 2));
        assert_eq!(verdict(&layout, nov(24)), Verdict::Ok { count: 2 });
        assert_eq!(verdict(&layout, nov(25)), Verdict::Ok { count: 1 });
        let text = std::fs::read_to_string(layout.day_file(nov(24))).unwrap();
        assert!(text.contains("\"outcome\":\"hung_up\""), "{text}");
        for personal in [CALL_KEY, PSEUDONYM, "+49 89", "spring-sale", "+4930901820"] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
        use std::os::unix::fs::PermissionsExt;
        for file in [layout.day_file(nov(24)), layout.seal_file(nov(24))] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_replayed_round_is_not_written_twice_and_an_unsealed_tail_is_sealed() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, mut store) = open(&tmp);
        let first = call(at(24, 1), Outcome::Complete);
        let second = [
            call(at(24, 2), Outcome::Complete),
            call(at(24, 3), Outcome::Objected),
        ]
        .concat();
        store.apply(&records(&first, 0)).unwrap();
        let seal_after_first = std::fs::read(layout.seal_file(nov(24))).unwrap();
        store.apply(&records(&second, 3)).unwrap();
        // A crash after the second append but before its seal: the old seal is what is left,
        // and the reader re-reads the second round.
        std::fs::write(layout.seal_file(nov(24)), &seal_after_first).unwrap();
        assert_eq!(verdict(&layout, nov(24)), Verdict::Unsealed { unsealed: 2 });
        drop(store);
        let (_, mut store) = open(&tmp);
        let round = store.apply(&records(&second, 3)).unwrap();
        assert_eq!((round.lines, round.duplicates, round.seals), (0, 2, 1));
        assert_eq!(verdict(&layout, nov(24)), Verdict::Ok { count: 3 });
        // Once the replay is over, new events are written.
        store.end_replay();
        let third = call(at(24, 4), Outcome::Complete);
        assert_eq!(store.apply(&records(&third, 9)).unwrap().lines, 1);
        assert_eq!(verdict(&layout, nov(24)), Verdict::Ok { count: 4 });
    }

    #[test]
    fn a_torn_last_line_is_cut_before_the_day_is_extended() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = one_sealed_call(&tmp);
        let mut file = OpenOptions::new()
            .append(true)
            .open(layout.day_file(nov(24)))
            .unwrap();
        file.write_all(b"{\"event_id\":\"0193").unwrap();
        let (_, mut store) = open(&tmp);
        let round = store
            .apply(&records(&call(at(24, 2), Outcome::Complete), 3))
            .unwrap();
        assert_eq!((round.lines, round.torn_lines_cut), (1, 1));
        assert_eq!(verdict(&layout, nov(24)), Verdict::Ok { count: 2 });
    }

    #[test]
    fn a_day_that_does_not_verify_is_left_as_found() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = one_sealed_call(&tmp);
        let path = layout.day_file(nov(24));
        let tampered = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"complete\"", "\"objected\"");
        std::fs::write(&path, &tampered).unwrap();
        let seal = std::fs::read(layout.seal_file(nov(24))).unwrap();
        let (_, mut store) = open(&tmp);
        let round = store
            .apply(&records(&call(at(24, 2), Outcome::Complete), 3))
            .unwrap();
        assert_eq!((round.lines, round.refused, round.seals), (0, 1, 0));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), tampered);
        assert_eq!(std::fs::read(layout.seal_file(nov(24))).unwrap(), seal);
        assert_eq!(verdict(&layout, nov(24)), Verdict::Chain { line: 1 });
    }

    #[test]
    fn disclosures_an_older_build_wrote_are_skipped_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, mut store) = open(&tmp);
        let lines = call(at(24, 1), Outcome::Complete);
        let mut old: serde_json::Value = serde_json::from_slice(&lines[1]).unwrap();
        old.as_object_mut().unwrap().remove("recording_sha256");
        old.as_object_mut().unwrap().remove("outcome");
        let round = store
            .apply(&records(&[serde_json::to_vec(&old).unwrap()], 0))
            .unwrap();
        assert_eq!((round.lines, round.skipped), (0, 1));
    }
}
