//! File-level ingest: one complete CDR file through the reader, the duplicate filter and the
//! quarantine into a [`RowSink`], with a checkpoint after each batch the sink accepted.
//!
//! Exactly-once: a batch's checkpoint (and its record ids in the duplicate filter) is written
//! only after the sink returned Ok, i.e. after the rows' events are durable downstream. A
//! failure or crash before that replays the batch on the next run, from the last checkpoint.
//! Quarantine entries of a batch are written after the sink accepted it and before the
//! commit, so they too appear once (twice only after a crash between those two writes).
//!
//! Then `after`: by default the file moves into the feed's private raw store (`raw.rs`).
//!
//! This is blocking file I/O and CPU work: async callers run it in `spawn_blocking` and
//! bridge to an async outbox with [`ChannelSink`].

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{CheckpointError, Checkpoints, FileId};
use super::dedup::{self, Key};
use super::format::Format;
use super::limits::Limits;
use super::quarantine::{Entry, Quarantine, QuarantineError};
use super::raw;
use super::reader::{Options, ReadError, Reader, Resume};
use super::row::{Row, RowError};
use super::watch::{After, Feed, marker_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("the row sink refused the batch")]
    Refused,
    #[error("the row sink is closed")]
    Closed,
}

/// Where mapped rows go. Returning Ok means the rows are durable: the file's checkpoint
/// moves past them.
pub trait RowSink {
    fn accept(&mut self, batch: Vec<Row>) -> Result<(), SinkError>;
}

impl<F: FnMut(Vec<Row>) -> Result<(), SinkError>> RowSink for F {
    fn accept(&mut self, batch: Vec<Row>) -> Result<(), SinkError> {
        self(batch)
    }
}

/// A batch for an async consumer, with the channel on which it acknowledges durability.
pub type Delivery = (Vec<Row>, oneshot::Sender<Result<(), SinkError>>);

/// Bridges the blocking ingest to an async task: each batch waits for its acknowledgement.
/// Only usable from a blocking thread (`spawn_blocking`), never inside an async task.
pub struct ChannelSink {
    tx: mpsc::Sender<Delivery>,
}

impl ChannelSink {
    pub fn new(tx: mpsc::Sender<Delivery>) -> Self {
        Self { tx }
    }
}

impl RowSink for ChannelSink {
    fn accept(&mut self, batch: Vec<Row>) -> Result<(), SinkError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .blocking_send((batch, ack))
            .map_err(|_| SinkError::Closed)?;
        done.blocking_recv().map_err(|_| SinkError::Closed)?
    }
}

/// What to ingest and how.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Feed name: scopes record ids in the duplicate filter.
    pub feed: &'a str,
    pub format: &'a Format,
    pub after: After,
    /// Also move or delete `<file>.done` with the file.
    pub marker: bool,
    /// Rows (good, bad or duplicate) per sink call and checkpoint.
    pub batch_size: usize,
    /// Bounds on records, gzip streams and CDR times.
    pub limits: Limits,
    /// The file is known to be complete, so a last line without LF is a row (else it is held
    /// back and the file stays, unfinished, for a later run).
    pub final_tail: bool,
}

impl<'a> Job<'a> {
    pub fn for_feed(
        feed: &'a Feed,
        format: &'a Format,
        batch_size: usize,
        data_dir: &Path,
        limits: Limits,
        final_tail: bool,
    ) -> Self {
        Self {
            feed: &feed.name,
            format,
            after: feed.after(data_dir),
            marker: feed.uses_marker(),
            batch_size,
            limits,
            final_tail,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub rows_ok: u64,
    pub rows_quarantined: u64,
    pub duplicates: u64,
    /// The file (or the same content under another name) was already complete.
    pub skipped_already_done: bool,
    /// This run continued from a checkpoint.
    pub resumed: bool,
    /// The file ends in a line without LF that was not read: the file is not finished (no
    /// `after`) and is read on from its checkpoint later.
    pub held_back: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot identify the CDR file")]
    Identity(#[source] io::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    #[error("cannot move or delete the ingested CDR file")]
    After(#[source] io::Error),
}

/// Rows read since the last commit.
struct Pending {
    rows: Vec<Row>,
    keys: Vec<Key>,
    key_set: HashSet<Key>,
    bad: Vec<(u64, RowError, String)>,
    read: u64,
    at: Option<Resume>,
}

/// Ingests one complete file; see the module doc for the guarantees.
pub fn ingest_file(
    path: &Path,
    job: &Job<'_>,
    checkpoints: &mut Checkpoints,
    quarantine: &mut Quarantine,
    sink: &mut impl RowSink,
) -> Result<IngestReport, IngestError> {
    let id = FileId::of(path).map_err(IngestError::Identity)?;
    let mut state = match checkpoints.lookup(&id) {
        Some(state) => Some(state),
        None => checkpoints.adopt_grown(path, &id)?,
    };
    let mut report = IngestReport::default();
    if let Some(s) = &mut state
        && s.complete
        && checkpoints.grew(&id)
    {
        // The same file, longer than when it was finished: a stalled upload that went on
        // after the quiet period judged it complete. Read on from the committed offset.
        s.complete = false;
    }
    if state.is_some_and(|s| s.complete) {
        report.skipped_already_done = true;
        // Remember this identity too, so prune and lookups see it directly.
        checkpoints.complete(&id, Utc::now())?;
        finish(path, job)?;
        return Ok(report);
    }
    let resume = state.map(|s| s.resume()).filter(|r| r.offset > 0);
    report.resumed = resume.is_some();
    let mut rows_done = state.map_or(0, |s| s.rows_done);
    let options = Options {
        limits: job.limits,
        final_tail: job.final_tail,
    };
    let label = path.to_string_lossy();
    let mut reader = match Reader::open_with(path, job.format, resume, options) {
        Ok(reader) => reader,
        Err(ReadError::Header(bound)) => {
            // Nothing of this file can be read under its limits: quarantine it whole, once.
            let reason = bound.to_string();
            let entry = Entry {
                file: &label,
                line: 1,
                reason: &reason,
                raw: "",
            };
            quarantine.append(&entry, Utc::now())?;
            quarantine.sync()?;
            report.rows_quarantined = 1;
            checkpoints.complete(&id, Utc::now())?;
            finish(path, job)?;
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    };
    let now = Utc::now();
    let batch_size = job.batch_size.max(1);
    let mut p = Pending {
        rows: Vec::with_capacity(batch_size),
        keys: Vec::with_capacity(batch_size),
        key_set: HashSet::with_capacity(batch_size),
        bad: Vec::new(),
        read: 0,
        at: None,
    };
    loop {
        let item = reader.next_item()?;
        let end = item.is_none();
        if let Some(item) = item {
            p.at = Some(item.resume());
            let result = item.result.and_then(|row| {
                job.limits
                    .check_times(&row, now)
                    .map(|()| row)
                    .map_err(Into::into)
            });
            match result {
                Ok(mut row) => {
                    row.line = item.line;
                    let k = dedup::key(job.feed, &row.record_id);
                    if checkpoints.seen(&k) || !p.key_set.insert(k) {
                        report.duplicates += 1;
                    } else {
                        p.keys.push(k);
                        p.rows.push(row);
                    }
                }
                Err(e) => p.bad.push((item.line, e, reader.raw_text())),
            }
            p.read += 1;
        }
        // A full batch, or what is left at the end, is delivered and checkpointed together.
        if end || p.read >= batch_size as u64 {
            rows_done += p.read;
            flush(
                &mut p,
                &id,
                &label,
                rows_done,
                checkpoints,
                quarantine,
                sink,
                &mut report,
            )?;
        }
        if end {
            break;
        }
    }
    if reader.held_back() {
        report.held_back = true;
        return Ok(report);
    }
    checkpoints.complete(&id, Utc::now())?;
    finish(path, job)?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn flush(
    p: &mut Pending,
    id: &FileId,
    label: &str,
    rows_done: u64,
    checkpoints: &mut Checkpoints,
    quarantine: &mut Quarantine,
    sink: &mut impl RowSink,
    report: &mut IngestReport,
) -> Result<(), IngestError> {
    let Some(at) = p.at.take() else {
        return Ok(());
    };
    let delivered = p.rows.len() as u64;
    if !p.rows.is_empty() {
        sink.accept(std::mem::take(&mut p.rows))?;
    }
    let now = Utc::now();
    for (line, reason, raw) in &p.bad {
        let reason = reason.to_string();
        let entry = Entry {
            file: label,
            line: *line,
            reason: &reason,
            raw,
        };
        quarantine.append(&entry, now)?;
    }
    quarantine.sync()?;
    checkpoints.commit(id, at, rows_done, &p.keys, now)?;
    report.rows_ok += delivered;
    report.rows_quarantined += p.bad.len() as u64;
    p.keys.clear();
    p.key_set.clear();
    p.bad.clear();
    p.read = 0;
    Ok(())
}

/// Applies `after` to the file (and its marker).
fn finish(path: &Path, job: &Job<'_>) -> Result<(), IngestError> {
    let marker = job.marker.then(|| marker_path(path));
    match &job.after {
        After::Keep => Ok(()),
        After::Delete => {
            remove(path)?;
            marker.map_or(Ok(()), |m| remove(&m))
        }
        After::Store(dir) | After::Move(dir) => {
            let opened = if matches!(job.after, After::Store(_)) {
                raw::open_store(dir)
            } else {
                raw::open_dir(dir)
            };
            opened
                .and_then(|()| raw::move_into(path, dir, SystemTime::now()))
                .map_err(IngestError::After)?;
            marker.map_or(Ok(()), |m| remove(&m))
        }
    }
}

fn remove(path: &Path) -> Result<(), IngestError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IngestError::After(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "ingest_tests.rs"]
mod tests;
