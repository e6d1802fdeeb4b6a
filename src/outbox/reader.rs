//! Named readers with a durable committed position (the Kafka forwarder, `events tail`).
//!
//! A reader only reads below the tail published by the writer after its write(2), so it never
//! sees a partial line. Reads are positional reads of the page cache done inline (no blocking
//! pool hop); waiting for new data is a `tokio::sync::watch` subscription.
//!
//! Damage found while reading (a power loss or a disk fault inside a segment, a bad position
//! file) is skipped, never a reason to stop: the numbering stays the writer's (every line takes
//! one sequence), a line that is not one JSON value is not handed out, a sealed segment whose
//! line count disagrees with the next segment's base is resynchronised at that base, and an
//! unusable position file restarts the reader at the oldest retained segment (duplicates that
//! consumers drop by `event_id`, instead of a delivery that stops). Each is counted in `Stats`
//! and logged in fixed words.
//!
//! Cancellation safety: `next_batch` mutates the reader only in a synchronous step before its
//! single await point (waiting for the tail to move), so dropping the future, e.g. in a losing
//! `tokio::select!` branch, loses no record; the next call returns the same records.

use std::fs::File;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::writer::Tail;
use super::{Error, Outbox, Position, Record, Stats, pos, recover, segment};

/// Bytes read from a segment at a time (doubled for longer lines).
const CHUNK: usize = 256 << 10;

/// A named consumer of the log. One per name per process.
pub struct Reader {
    outbox: Outbox,
    name: String,
    /// Next sequence to hand out.
    next: u64,
    cur: Option<Cursor>,
    tail: watch::Receiver<Tail>,
}

struct Cursor {
    base: u64,
    file: File,
    /// File offset of the start of `pending`.
    offset: u64,
    /// Sequence of the first line in `pending`.
    seq: u64,
    /// Bytes read but not yet handed out; complete lines, except at a sealed segment's corrupt end.
    pending: Bytes,
    sealed_len: Option<u64>,
    /// The next segment's base when this one was opened sealed: its lines must end there.
    end: Option<u64>,
}

impl Cursor {
    /// Opens segment `base`; `bases` is a current listing of the segments.
    fn open(dir: &std::path::Path, base: u64, bases: &[u64]) -> Result<Cursor, Error> {
        Ok(Cursor {
            base,
            file: segment::open_read(dir, base)?,
            offset: 0,
            seq: base,
            pending: Bytes::new(),
            sealed_len: None,
            end: bases.iter().copied().find(|&b| b > base),
        })
    }
}

impl Outbox {
    /// Opens reader `name`, resuming after its committed position (from the start of the log if
    /// it never committed). Fails with `ReaderBusy` if it is already open in this process.
    pub fn reader(&self, name: &str) -> Result<Reader, Error> {
        pos::check_name(name)?;
        let shared = &self.inner.shared;
        let fresh = shared
            .readers
            .lock()
            .map_err(|_| Error::Poisoned)?
            .insert(name.to_owned());
        if !fresh {
            return Err(Error::ReaderBusy);
        }
        // From here on Drop releases the name, also on the error paths below.
        let mut reader = Reader {
            outbox: self.clone(),
            name: name.to_owned(),
            next: 0,
            cur: None,
            tail: shared.tail.subscribe(),
        };
        let end = reader.tail.borrow().next;
        reader.next = match pos::load(&shared.dir, name) {
            Ok(stored) if stored.unwrap_or(0) <= end => stored.unwrap_or(0),
            // Both mean the file no longer says where the reader was (a torn or garbled
            // position file, an outbox replaced underneath it); resending from the oldest
            // retained segment keeps delivery going, at the price of duplicates.
            Ok(_) => reader.reset_position("beyond_end"),
            Err(Error::Corrupt { .. }) => reader.reset_position("unreadable"),
            Err(e) => return Err(e),
        };
        Ok(reader)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Ok(mut names) = self.outbox.inner.shared.readers.lock() {
            names.remove(&self.name);
        }
    }
}

impl Reader {
    /// The position the next record handed out will have.
    pub fn position(&self) -> Position {
        Position(self.next)
    }

    /// Up to `max` records that are available now; empty when caught up. Never waits.
    pub fn try_next_batch(&mut self, max: usize) -> Result<Vec<Record>, Error> {
        let tail = *self.tail.borrow_and_update();
        let mut out = Vec::new();
        if max == 0 || self.next >= tail.next {
            return Ok(out);
        }
        let mut cur = match self.cur.take() {
            Some(cur) => cur,
            None => self.seek()?,
        };
        let dir = self.outbox.dir().to_path_buf();
        let (stats, name) = (self.outbox.stats().clone(), self.name.clone());
        let report = Report {
            stats: &stats,
            reader: &name,
        };
        let start = self.next;
        loop {
            let step = read(
                &dir,
                &report,
                &mut cur,
                &mut self.next,
                &tail,
                max,
                &mut out,
            )
            .and_then(|step| match step {
                Step::Done => Ok(None),
                Step::Reseek => self.seek().map(Some),
            });
            match step {
                Ok(None) => break,
                Ok(Some(moved)) => cur = moved,
                Err(e) => {
                    // Records gathered before the error are not handed out, so the position
                    // must not move past them; the next call re-reads from here.
                    self.next = start;
                    return Err(e);
                }
            }
        }
        self.cur = Some(cur);
        Ok(out)
    }

    /// Up to `max` records, waiting until at least one is available. Cancel-safe (see module
    /// doc); `max == 0` returns an empty batch at once.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, Error> {
        loop {
            let batch = self.try_next_batch(max)?;
            if !batch.is_empty() || max == 0 {
                return Ok(batch);
            }
            // `try_next_batch` marked the tail as seen, so any append after it wakes us.
            self.tail.changed().await.map_err(|_| Error::Background)?;
        }
    }

    /// Like `next_batch`, but returns an empty batch once `deadline` passes.
    pub async fn next_batch_until(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Result<Vec<Record>, Error> {
        match tokio::time::timeout_at(deadline, self.next_batch(max)).await {
            Ok(batch) => batch,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Durably records that everything up to and including `position` is consumed; a reopened
    /// reader resumes at `position + 1`. Only positions already handed out can be committed.
    pub async fn commit(&mut self, position: Position) -> Result<(), Error> {
        if position.0 >= self.next {
            return Err(Error::CommitAhead);
        }
        let dir = self.outbox.dir().to_path_buf();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || pos::store(&dir, &name, position.0 + 1))
            .await
            .map_err(|_| Error::Background)?
    }

    /// Counts and logs a position file that could not be used; the reader starts at 0 (`seek`
    /// moves on to the oldest retained segment).
    fn reset_position(&self, reason: &'static str) -> u64 {
        if let Some(suppressed) = self.outbox.stats().count_position_reset() {
            tracing::warn!(
                reader = %self.name,
                reason,
                suppressed,
                "Reader position file unusable; reading again from the oldest retained segment."
            );
        }
        0
    }

    /// Positions the cursor at the segment holding `self.next`. If retention removed it, jumps to
    /// the oldest segment left and says how many records were skipped (count only).
    fn seek(&mut self) -> Result<Cursor, Error> {
        let dir = self.outbox.dir();
        let bases = segment::list(dir)?;
        let base = match bases.iter().rev().find(|&&b| b <= self.next) {
            Some(&b) => b,
            None => {
                let Some(&first) = bases.first() else {
                    return Err(Error::corrupt(".", "no segment files"));
                };
                tracing::warn!(
                    reader = %self.name,
                    skipped = first - self.next,
                    "Reader skipped records removed by retention."
                );
                self.next = first;
                first
            }
        };
        Cursor::open(dir, base, &bases)
    }
}

enum Step {
    Done,
    Reseek,
}

/// Moves `cur` forward, handing out records with sequence >= `next` until `max` or the tail.
fn read(
    dir: &std::path::Path,
    report: &Report<'_>,
    cur: &mut Cursor,
    next: &mut u64,
    tail: &Tail,
    max: usize,
    out: &mut Vec<Record>,
) -> Result<Step, Error> {
    let mut chunk = CHUNK;
    while out.len() < max && *next < tail.next {
        if let Some(i) = cur.pending.iter().position(|&b| b == b'\n') {
            let mut line = cur.pending.split_to(i + 1);
            line.truncate(i);
            if cur.end.is_some_and(|end| cur.seq >= end) {
                // More lines than the next segment's base allows (a garbled line split in
                // two): handing them out would reuse the next segment's positions.
                if cur.seq >= *next {
                    report.skipped(cur.base, Damage::ExtraLine, 1);
                }
            } else if cur.seq >= *next {
                if recover::is_json(&line) {
                    out.push(Record {
                        position: Position(cur.seq),
                        line,
                    });
                } else {
                    report.skipped(cur.base, Damage::NotJson, 1);
                }
                *next = cur.seq + 1;
            }
            cur.seq += 1;
            cur.offset += i as u64 + 1;
            continue;
        }
        if cur.base > tail.base {
            return Ok(Step::Done);
        }
        let limit = if cur.base == tail.base {
            tail.len
        } else if let Some(len) = cur.sealed_len {
            len
        } else {
            let len = cur
                .file
                .metadata()
                .map_err(|e| Error::io("reading metadata", segment::name(cur.base), e))?
                .len();
            *cur.sealed_len.insert(len)
        };
        let from = cur.offset + cur.pending.len() as u64;
        if from >= limit {
            if cur.base == tail.base {
                // The active segment is read only up to the published tail, which always
                // ends a line.
                return Ok(Step::Done);
            }
            if !cur.pending.is_empty() {
                // A sealed segment cut inside a line: that last fragment is not a record.
                cur.offset += cur.pending.len() as u64;
                cur.pending = Bytes::new();
                if cur.seq >= *next {
                    if cur.end.is_some_and(|end| cur.seq >= end) {
                        report.skipped(cur.base, Damage::ExtraLine, 1);
                    } else {
                        report.skipped(cur.base, Damage::NotJson, 1);
                        *next = cur.seq + 1;
                    }
                }
                cur.seq += 1;
            }
            let bases = segment::list(dir)?;
            if !bases.contains(&cur.base) {
                return Ok(Step::Reseek);
            }
            let Some(b) = bases.iter().copied().find(|&b| b > cur.base) else {
                return Err(Error::corrupt(
                    segment::name(cur.base),
                    "sealed segment has no successor",
                ));
            };
            if cur.seq < b && *next < b {
                // Lines merged or cut away: the sequences up to the next base have no line.
                report.skipped(cur.base, Damage::MissingLines, b - cur.seq.max(*next));
            }
            *next = (*next).max(b);
            *cur = Cursor::open(dir, b, &bases)?;
            continue;
        }
        if !cur.pending.is_empty() {
            // A line longer than one chunk: read more of it at once.
            chunk = chunk.saturating_mul(2);
        }
        let want = usize::try_from(limit - from)
            .unwrap_or(usize::MAX)
            .min(chunk);
        let mut buf = Vec::with_capacity(cur.pending.len() + want);
        buf.extend_from_slice(&cur.pending);
        let old = buf.len();
        buf.resize(old + want, 0);
        cur.file
            .read_exact_at(&mut buf[old..], from)
            .map_err(|e| Error::io("reading", segment::name(cur.base), e))?;
        cur.pending = Bytes::from(buf);
    }
    Ok(Step::Done)
}

/// Damage a reader skips over, each counted and logged under its own fixed words.
#[derive(Debug, Clone, Copy)]
enum Damage {
    NotJson,
    ExtraLine,
    MissingLines,
}

/// Where a reader's damage is counted and logged: one place, so count and log cannot drift.
struct Report<'a> {
    stats: &'a Stats,
    reader: &'a str,
}

impl Report<'_> {
    fn skipped(&self, base: u64, damage: Damage, n: u64) {
        let stats = self.stats;
        let (logged, what) = match damage {
            Damage::NotJson => (
                stats.count_corrupt_lines(n),
                "Reader skipped a corrupt outbox line.",
            ),
            Damage::ExtraLine => (
                stats.count_corrupt_lines(n),
                "Reader skipped an outbox line beyond the next segment's start.",
            ),
            Damage::MissingLines => (
                stats.count_missing_lines(n),
                "Reader skipped records missing from a sealed outbox segment.",
            ),
        };
        if let Some(suppressed) = logged {
            tracing::warn!(
                reader = self.reader,
                segment = segment::name(base),
                lines = n,
                suppressed,
                "{what}"
            );
        }
    }
}
