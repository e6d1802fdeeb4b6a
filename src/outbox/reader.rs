//! Named readers with a durable committed position (the Kafka forwarder, `events tail`).
//!
//! A reader only reads below the tail published by the writer after its write(2), so it never
//! sees a partial line. Reads are positional reads of the page cache done inline (no blocking
//! pool hop); waiting for new data is a `tokio::sync::watch` subscription.
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
use super::{Error, Outbox, Position, Record, pos, segment};

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
}

impl Cursor {
    fn open(dir: &std::path::Path, base: u64) -> Result<Cursor, Error> {
        Ok(Cursor {
            base,
            file: segment::open_read(dir, base)?,
            offset: 0,
            seq: base,
            pending: Bytes::new(),
            sealed_len: None,
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
        let stored = pos::load(&shared.dir, name)?.unwrap_or(0);
        if stored > reader.tail.borrow().next {
            return Err(Error::PositionAhead);
        }
        reader.next = stored;
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
        let start = self.next;
        loop {
            let step =
                read(&dir, &mut cur, &mut self.next, &tail, max, &mut out).and_then(|step| {
                    match step {
                        Step::Done => Ok(None),
                        Step::Reseek => self.seek().map(Some),
                    }
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
        Cursor::open(dir, base)
    }
}

enum Step {
    Done,
    Reseek,
}

/// Moves `cur` forward, handing out records with sequence >= `next` until `max` or the tail.
fn read(
    dir: &std::path::Path,
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
            if cur.seq >= *next {
                out.push(Record {
                    position: Position(cur.seq),
                    line,
                });
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
            if !cur.pending.is_empty() {
                return Err(Error::corrupt(
                    segment::name(cur.base),
                    "segment ends inside a line",
                ));
            }
            if cur.base == tail.base {
                return Ok(Step::Done);
            }
            let bases = segment::list(dir)?;
            if !bases.contains(&cur.base) {
                return Ok(Step::Reseek);
            }
            match bases.into_iter().find(|&b| b > cur.base) {
                Some(b) if b == cur.seq => *cur = Cursor::open(dir, b)?,
                _ => {
                    return Err(Error::corrupt(
                        segment::name(cur.base),
                        "line count does not match the next segment",
                    ));
                }
            }
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
