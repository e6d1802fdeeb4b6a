//! Running CDR feeds inside the daemon, and one-off imports from the CLI, through the same path:
//! spool watcher → one file at a time on a blocking thread → `ingest_file` → `OutboxSink`; and
//! the retention of what ingest leaves behind (quarantine, checkpoints, raw files). A file
//! whose ingest failed, or whose last line was held back, is scheduled again (`retry.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use chrono::{TimeDelta, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::checkpoint::{Checkpoints, FileId};
use super::complete::{Completer, Counts, OutboxSink};
use super::dedup::Limits as DedupLimits;
use super::format::Format;
use super::ingest::{IngestError, IngestReport, Job, ingest_file};
use super::limits::Limits;
use super::quarantine::Quarantine;
use super::raw::{self, Retention, Scope};
use super::retry::Retry;
use super::watch::{self, After, Feed, IMPORT_FEED};
use crate::ops::Occurrence;
use crate::outbox::Outbox;

/// Rows per batch: one outbox fsync and one checkpoint per batch.
pub const BATCH_ROWS: usize = 5000;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Checkpoints(#[from] super::checkpoint::CheckpointError),
    #[error(transparent)]
    Quarantine(#[from] super::quarantine::QuarantineError),
    #[error("unknown CDR format (see [cdr.formats] and the built-in presets)")]
    UnknownFormat,
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// The stateful part: checkpoints, duplicate filter and quarantine, one ingest at a time.
pub struct Ingestor {
    checkpoints: Mutex<Checkpoints>,
    quarantine: Mutex<Quarantine>,
    completer: Completer,
    outbox: Outbox,
    formats: BTreeMap<String, Format>,
    pub counts: Counts,
    stop: AtomicBool,
    data_dir: PathBuf,
    /// Every feed's raw files with a retention, and `cdr import`'s store.
    raw: Vec<Retention>,
    /// `[cdr.limits]`: `cdr import`'s bounds, and every feed's under its own.
    limits: Limits,
}

impl Ingestor {
    pub fn open(
        data_dir: &Path,
        duplicate_window: TimeDelta,
        completer: Completer,
        outbox: Outbox,
        formats: BTreeMap<String, Format>,
        feeds: &[Feed],
    ) -> Result<Self, ServiceError> {
        let limits = DedupLimits {
            window: duplicate_window,
            ..DedupLimits::default()
        };
        let checkpoints = Checkpoints::open(data_dir, limits, Utc::now())?;
        let quarantine = Quarantine::open(data_dir)?;
        Ok(Self {
            checkpoints: Mutex::new(checkpoints),
            quarantine: Mutex::new(quarantine),
            completer,
            outbox,
            formats,
            counts: Counts::default(),
            stop: AtomicBool::new(false),
            data_dir: data_dir.to_path_buf(),
            raw: feeds
                .iter()
                .filter_map(|f| Retention::for_feed(f, data_dir))
                .chain(std::iter::once(Retention::store(data_dir, IMPORT_FEED)))
                .collect(),
            limits: Limits::default(),
        })
    }

    /// Uses `limits` (`[cdr.limits]`) instead of the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The bounds `cdr import` reads under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The bounds `feed` reads under: its own keys over `[cdr.limits]`.
    pub fn limits_for(&self, feed: &Feed) -> Limits {
        feed.limits.over(self.limits)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where `cdr import` puts a file once ingested: the import's private raw store.
    pub fn import_after(&self) -> After {
        After::Store(raw::store_dir(&self.data_dir, IMPORT_FEED))
    }

    pub fn completer(&self) -> &Completer {
        &self.completer
    }

    pub fn format(&self, name: &str) -> Option<&Format> {
        self.formats.get(name)
    }

    /// Ingests one complete file; blocking (call from `spawn_blocking` inside the daemon).
    pub fn ingest(
        &self,
        path: &Path,
        job: &Job<'_>,
        runtime: tokio::runtime::Handle,
    ) -> Result<IngestReport, ServiceError> {
        let feed = job.feed;
        let mut checkpoints = self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut quarantine = self
            .quarantine
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Rows refused after mapping (not a phone number) go to the same day files.
        let mut sink_quarantine = Quarantine::open(&self.data_dir)?;
        let file = path.to_string_lossy().into_owned();
        let mut sink = OutboxSink {
            completer: &self.completer,
            outbox: &self.outbox,
            runtime,
            quarantine: &mut sink_quarantine,
            feed,
            file: &file,
            counts: &self.counts,
            stop: &self.stop,
        };
        let report = ingest_file(path, job, &mut checkpoints, &mut quarantine, &mut sink)?;
        let _ = sink_quarantine.sync();
        Ok(report)
    }

    /// Stops at the next batch boundary: the current file resumes from its checkpoint later.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Deletes ingested raw CDR files past their feed's `raw_retention_hours`; returns how many.
    /// Run it before `purge`: a kept spool file is deleted only while its checkpoint still says
    /// it was ingested.
    pub fn purge_raw(&self) -> u64 {
        let now = SystemTime::now();
        let mut deleted = 0;
        for retention in &self.raw {
            let result = if let Scope::Spool { .. } = retention.scope {
                let checkpoints = self
                    .checkpoints
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                retention.purge(now, |path| {
                    FileId::of(path)
                        .ok()
                        .and_then(|id| checkpoints.lookup(&id))
                        .is_some_and(|state| state.complete)
                })
            } else {
                retention.purge(now, |_| false)
            };
            deleted += self.raw_purged(&retention.feed, result);
        }
        deleted
    }

    /// Counts and logs one feed's raw purge.
    fn raw_purged(&self, feed: &str, result: std::io::Result<usize>) -> u64 {
        match result {
            Ok(0) => 0,
            Ok(n) => {
                let n = n as u64;
                self.counts.raw_purged.inc_by(n);
                info!(
                    feed,
                    deleted = n,
                    "Raw CDR files past their retention deleted."
                );
                n
            }
            Err(err) => {
                // Hourly per feed: every failure is logged.
                static FAILED: Occurrence = Occurrence::new(Duration::ZERO);
                if let Some(suppressed) = FAILED.record(&self.counts.raw_purge_failures) {
                    warn!(feed, error = %err, suppressed, "Raw CDR files past their retention could not be deleted.");
                }
                0
            }
        }
    }

    /// Drops quarantined rows and checkpoints past their retention.
    pub fn purge(&self, quarantine_days: u64) {
        let cutoff = Utc::now()
            - TimeDelta::days(i64::try_from(quarantine_days).unwrap_or(i64::MAX / 86_400_000));
        let mut quarantine = self
            .quarantine
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = quarantine.purge(cutoff) {
            warn!(error = %err, "CDR quarantine purge failed.");
        }
        let mut checkpoints = self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = checkpoints.prune(cutoff) {
            warn!(error = %err, "CDR checkpoint prune failed.");
        }
    }
}

/// Watches every feed and ingests complete files until shutdown; failed files and held-back
/// tails are ingested again when `retry` says.
pub async fn run(ingestor: Arc<Ingestor>, feeds: Vec<Feed>, shutdown: CancellationToken) {
    let (tx, mut rx) = mpsc::channel::<(usize, PathBuf)>(64);
    let mut watchers = Vec::new();
    for (i, feed) in feeds.iter().enumerate() {
        let (feed_tx, mut feed_rx) = mpsc::channel::<PathBuf>(64);
        match watch::spawn(feed.clone(), feed_tx) {
            Ok(handle) => watchers.push(handle),
            Err(err) => {
                warn!(feed = %feed.name, error = %err, "CDR feed not started.");
                continue;
            }
        }
        let tx = tx.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(path) = feed_rx.recv().await {
                if tx.send((i, path)).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut retry = Retry::default();
    'run: loop {
        let due = retry.next_due().map(tokio::time::Instant::from_std);
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            next = rx.recv() => match next {
                Some(next) => vec![next],
                None => break,
            },
            () = until(due) => retry.take_due(std::time::Instant::now()),
        };
        for (i, path) in next {
            let feed = &feeds[i];
            let Some(outcome) = ingest_one(&ingestor, feed, &path, &shutdown).await else {
                break 'run;
            };
            let now = std::time::Instant::now();
            match outcome {
                Outcome::Done(report) => {
                    retry.clear(&path);
                    ingestor.counts.file_done(&report);
                    info!(
                        feed = %feed.name,
                        rows = report.rows_ok,
                        quarantined = report.rows_quarantined,
                        duplicates = report.duplicates,
                        skipped = report.skipped_already_done,
                        "CDR file ingested."
                    );
                }
                Outcome::Held(report, wait) => {
                    retry.held(&path, i, now, wait);
                    ingestor.counts.rows_done(&report);
                    info!(
                        feed = %feed.name,
                        rows = report.rows_ok,
                        quarantined = report.rows_quarantined,
                        wait_seconds = wait.as_secs(),
                        "CDR file read up to a last line without newline; that line waits."
                    );
                }
                Outcome::Gone => retry.clear(&path),
                Outcome::Failed(err) => {
                    let delay = retry.failed(&path, i, now);
                    // Each file is retried with backoff, so every failure is logged.
                    static FAILED: Occurrence = Occurrence::new(Duration::ZERO);
                    if let Some(suppressed) = FAILED.record(&ingestor.counts.files_failed) {
                        warn!(
                            feed = %feed.name,
                            error = %err,
                            retry_seconds = delay.as_secs(),
                            suppressed,
                            "CDR file not ingested; it is tried again."
                        );
                    }
                }
            }
        }
    }
    for w in watchers {
        w.abort();
    }
}

/// What one ingest of one file came to.
enum Outcome {
    Done(IngestReport),
    /// Read up to a held-back last line, which may be read after the wait.
    Held(IngestReport, Duration),
    /// The file is no longer there (moved by an earlier ingest, or deleted).
    Gone,
    Failed(String),
}

/// Sleeps until `at`, or for ever.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Ingests one file on a blocking thread; `None` when shutdown interrupted it.
async fn ingest_one(
    ingestor: &Arc<Ingestor>,
    feed: &Feed,
    path: &Path,
    shutdown: &CancellationToken,
) -> Option<Outcome> {
    let Some(format) = ingestor.format(&feed.format).cloned() else {
        return Some(Outcome::Failed("unknown CDR format".to_owned()));
    };
    let mtime = match std::fs::metadata(path).and_then(|m| m.modified()) {
        Ok(t) => chrono::DateTime::<Utc>::from(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Outcome::Gone),
        Err(_) => Utc::now(),
    };
    let wait = feed.tail_wait(mtime, Utc::now());
    let worker = ingestor.clone();
    let runtime = tokio::runtime::Handle::current();
    let after = feed.after(ingestor.data_dir());
    let limits = ingestor.limits_for(feed);
    let (feed_owned, owned_path) = (feed.clone(), path.to_owned());
    let mut job = tokio::task::spawn_blocking(move || {
        let job = Job {
            feed: &feed_owned.name,
            format: &format,
            after,
            marker: feed_owned.uses_marker(),
            batch_size: BATCH_ROWS,
            limits,
            final_tail: wait.is_zero(),
        };
        worker.ingest(&owned_path, &job, runtime)
    });
    let done = tokio::select! {
        () = shutdown.cancelled() => {
            ingestor.stop();
            let _ = (&mut job).await;
            return None;
        }
        done = &mut job => done,
    };
    Some(match done {
        Ok(Ok(report)) if report.held_back => {
            Outcome::Held(report, wait.max(Duration::from_secs(1)))
        }
        Ok(Ok(report)) => Outcome::Done(report),
        Ok(Err(ServiceError::Ingest(IngestError::Identity(e))))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            Outcome::Gone
        }
        Ok(Err(err)) => Outcome::Failed(err.to_string()),
        Err(_) => Outcome::Failed("the ingest task failed".to_owned()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "service_tests.rs"]
mod tests;
