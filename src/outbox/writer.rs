//! The write side: open with recovery, append with write(2), roll segments, enforce the cap.
//!
//! One `std::sync::Mutex` serializes writers. The critical section is a page-cache write(2) of
//! a pre-built buffer, so it is held for microseconds and never across an `.await`; fdatasync
//! runs on the syncer thread (see `sync.rs`) outside the lock.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::recover::{self, recover};
use super::segment::{self, DIR_MODE};
use super::{Durability, Error, Options, Position, Span, Stats};

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dir", &self.inner.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the outbox's size and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The position the next append gets.
    pub end: Position,
    /// Bytes in all segments on disk.
    pub bytes: u64,
    /// `max_bytes`: appends beyond it are refused.
    pub max_bytes: u64,
    /// A failed fsync poisoned the writer: every append fails until a restart.
    pub poisoned: bool,
    /// The last write hit a full file system (ENOSPC, EDQUOT) and it still has less than
    /// `RESUME_FREE_BYTES` available: appends would fail, so calls are refused before they start.
    pub no_space: bool,
}

impl Usage {
    /// Whether `bytes` more can be appended now: writable, the file system not full, and below
    /// `max_bytes` after them.
    pub fn has_room(&self, bytes: u64) -> bool {
        !self.poisoned && !self.no_space && self.bytes.saturating_add(bytes) <= self.max_bytes
    }
}

/// Free bytes the outbox's file system needs after an ENOSPC before `Usage::no_space` clears: a
/// few calls' events, so the first call let through is unlikely to fail after its announcement.
const RESUME_FREE_BYTES: u64 = 64 << 10;

/// The durable local event log. Cheap to clone; all clones share one log.
#[derive(Clone)]
pub struct Outbox {
    pub(super) inner: Arc<Inner>,
}

/// What `open` found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    /// Position the next append gets.
    pub next: Position,
    /// Bytes of all segments after recovery.
    pub bytes: u64,
    /// Torn lines cut from the end of the last segment.
    pub torn_lines_cut: u64,
}

/// Readers' view of the end of the log: only bytes below `len` of segment `base` and sequences
/// below `next` are complete lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tail {
    pub next: u64,
    pub base: u64,
    pub len: u64,
}

/// Progress of the syncer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Synced {
    /// Every sequence below this is covered by an fdatasync.
    pub next: u64,
    pub failed: bool,
}

/// Mutable state of the write side, behind `Shared::w`.
pub(super) struct Writer {
    pub file: Arc<File>,
    pub base: u64,
    pub len: u64,
    pub next: u64,
    pub total: u64,
    /// Rolled segments whose last writes the syncer has not covered yet.
    pub sealed: Vec<Arc<File>>,
    /// A segment was created or removed since the last directory fsync.
    pub dir_dirty: bool,
    pub poisoned: bool,
    /// The last write failed for lack of space (cleared by a successful write).
    pub no_space: bool,
    /// `flush` asks for a round now instead of at the next interval.
    pub urgent: bool,
    pub stop: bool,
}

pub(super) struct Shared {
    pub dir: PathBuf,
    pub opts: Options,
    pub w: Mutex<Writer>,
    /// Wakes the syncer (Sync durability, shutdown).
    pub wake: Condvar,
    pub tail: watch::Sender<Tail>,
    pub synced: watch::Sender<Synced>,
    pub stats: Stats,
    pub readers: Mutex<HashSet<String>>,
    pub report: OpenReport,
    /// Held for the outbox's lifetime: the OS releases the lock when the process dies.
    _lock: std::fs::File,
}

pub(super) struct Inner {
    pub shared: Arc<Shared>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut w) = self.shared.w.lock() {
            w.stop = true;
        }
        self.shared.wake.notify_all();
        let handle = self.syncer.get_mut().ok().and_then(Option::take);
        if let Some(handle) = handle {
            // The syncer makes a last fdatasync round before it exits.
            let _ = handle.join();
        }
    }
}

impl Shared {
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, Writer>, Error> {
        self.w.lock().map_err(|_| Error::Poisoned)
    }
}

impl Outbox {
    /// Opens (creating if needed) the outbox in `dir` (normally `<data_dir>/outbox`), recovering
    /// the last segment. Starts the syncer thread; needs no tokio runtime.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Outbox, Error> {
        opts.check()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir.join("readers"))
            .map_err(|e| Error::io("creating directory", "readers", e))?;
        // One writer per directory: a second process (a `cdr import` beside a running daemon)
        // would interleave segments and corrupt the log.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| Error::io("opening", "LOCK", e))?;
        lock.try_lock().map_err(|_| Error::Locked)?;

        let stats = Stats::default();
        let mut bases = segment::list(&dir)?;
        let mut total = 0;
        for &base in bases.iter().rev().skip(1) {
            let meta = std::fs::metadata(dir.join(segment::name(base)))
                .map_err(|e| Error::io("reading metadata", segment::name(base), e))?;
            total += meta.len();
        }
        let (file, base, len, next, cut) = match bases.last() {
            Some(&base) => {
                let name = segment::name(base);
                let bytes =
                    std::fs::read(dir.join(&name)).map_err(|e| Error::io("reading", &name, e))?;
                let r = recover(&bytes);
                let file =
                    segment::reopen(&dir, base).map_err(|e| Error::io("opening", &name, e))?;
                if r.keep < bytes.len() {
                    file.set_len(r.keep as u64)
                        .map_err(|e| Error::io("truncating", &name, e))?;
                }
                // Whatever a killed predecessor left in the page cache becomes durable now, so
                // the syncer may start from "everything synced".
                file.sync_data()
                    .map_err(|e| Error::io("syncing", &name, e))?;
                (file, base, r.keep as u64, base + r.lines, r.cut)
            }
            None => {
                let file = segment::create(&dir, 0)
                    .map_err(|e| Error::io("creating", segment::name(0), e))?;
                segment::sync_dir(&dir, ".")?;
                bases.push(0);
                (file, 0, 0, 0, 0)
            }
        };
        total += len;
        stats.count_torn(cut);
        let report = OpenReport {
            segments: bases.len(),
            next: Position(next),
            bytes: total,
            torn_lines_cut: cut,
        };
        if cut > 0 {
            tracing::warn!(torn_lines_cut = cut, "Outbox recovery cut torn lines.");
        }
        tracing::info!(
            segments = bases.len(),
            next,
            bytes = total,
            "Outbox opened."
        );

        let shared = Arc::new(Shared {
            _lock: lock,
            dir,
            opts,
            w: Mutex::new(Writer {
                file: Arc::new(file),
                base,
                len,
                next,
                total,
                sealed: Vec::new(),
                dir_dirty: false,
                poisoned: false,
                no_space: false,
                urgent: false,
                stop: false,
            }),
            wake: Condvar::new(),
            tail: watch::Sender::new(Tail { next, base, len }),
            synced: watch::Sender::new(Synced {
                next,
                failed: false,
            }),
            stats,
            readers: Mutex::new(HashSet::new()),
            report,
        });
        let syncer = super::sync::spawn(Arc::clone(&shared))
            .map_err(|e| Error::io("starting syncer thread", ".", e))?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                shared,
                syncer: Mutex::new(Some(syncer)),
            }),
        })
    }

    /// Appends one JSON line (without '\n'). Returns once the line is written with write(2), and
    /// under `Durability::Sync` once an fdatasync covered it. Cancel-safe in the sense that a
    /// dropped future never leaves a partial line; the line may or may not have been written.
    pub async fn append(&self, line: &[u8]) -> Result<Position, Error> {
        Ok(self.append_batch(&[line]).await?.first)
    }

    /// Appends lines atomically as one write: all get consecutive positions, or none is written
    /// (a refused or failed batch leaves the log as it was).
    pub async fn append_batch(&self, lines: &[&[u8]]) -> Result<Span, Error> {
        let span = self.write(lines)?;
        if self.inner.shared.opts.durability == Durability::Sync && span.count > 0 {
            self.wait_synced(span.first.0 + span.count).await?;
        }
        Ok(span)
    }

    /// Blocks until an fdatasync covers everything appended so far (for shutdown and tests).
    pub async fn flush(&self) -> Result<(), Error> {
        let next = {
            let mut w = self.inner.shared.lock()?;
            w.urgent = true;
            w.next
        };
        self.inner.shared.wake.notify_one();
        self.wait_synced(next).await
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.shared.stats
    }

    pub fn open_report(&self) -> OpenReport {
        self.inner.shared.report
    }

    /// The position the next append gets.
    pub fn end(&self) -> Result<Position, Error> {
        Ok(Position(self.inner.shared.lock()?.next))
    }

    /// What the outbox holds now, for `status`, the metrics collector and the SIP edge's
    /// decision to take a call.
    pub fn usage(&self) -> Result<Usage, Error> {
        let shared = &self.inner.shared;
        let mut usage = {
            let w = shared.lock()?;
            Usage {
                end: Position(w.next),
                bytes: w.total,
                max_bytes: shared.opts.max_bytes,
                poisoned: w.poisoned,
                no_space: w.no_space,
            }
        };
        if usage.no_space {
            // No append succeeds while calls are refused, so recovery is noticed here: one
            // statvfs(2), only while the file system is known to be full. Outside the lock.
            usage.no_space = !rustix::fs::statvfs(&shared.dir)
                .is_ok_and(|v| v.f_bavail.saturating_mul(v.f_frsize) >= RESUME_FREE_BYTES);
        }
        Ok(usage)
    }

    /// The directory of this outbox.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    fn write(&self, lines: &[&[u8]]) -> Result<Span, Error> {
        let s = &*self.inner.shared;
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            check(line)?;
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let n = buf.len() as u64;
        let count = lines.len() as u64;

        let mut w = s.lock()?;
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        if count == 0 {
            return Ok(Span {
                first: Position(w.next),
                count,
            });
        }
        if w.total.saturating_add(n) > s.opts.max_bytes {
            s.stats.count_full();
            return Err(Error::Full);
        }
        if w.len > 0 && w.len + n > s.opts.segment_bytes {
            roll(&s.dir, &mut w).inspect_err(|e| {
                if let Error::Io { source, .. } = e {
                    w.no_space |= is_no_space(source);
                }
            })?;
        }
        if let Err(e) = (&*w.file).write_all(&buf) {
            // write_all may have written a prefix; cut it so no reader or recovery sees it.
            if w.file.set_len(w.len).is_err() {
                w.poisoned = true;
            }
            w.no_space |= is_no_space(&e);
            return Err(Error::io("writing", segment::name(w.base), e));
        }
        w.no_space = false;
        let first = Position(w.next);
        w.len += n;
        w.total += n;
        w.next += count;
        s.tail.send_replace(Tail {
            next: w.next,
            base: w.base,
            len: w.len,
        });
        drop(w);
        s.stats.count_append(count, n);
        if s.opts.durability == Durability::Sync {
            s.wake.notify_one();
        }
        Ok(Span { first, count })
    }

    async fn wait_synced(&self, next: u64) -> Result<(), Error> {
        let mut rx = self.inner.shared.synced.subscribe();
        let state = *rx
            .wait_for(|s| s.failed || s.next >= next)
            .await
            .map_err(|_| Error::Background)?;
        if state.next >= next {
            Ok(())
        } else {
            Err(Error::SyncFailed)
        }
    }
}

/// Refuses anything that would not read back as exactly one JSON record.
fn check(line: &[u8]) -> Result<(), Error> {
    if line.is_empty() {
        return Err(Error::Empty);
    }
    if line.contains(&b'\n') {
        return Err(Error::Newline);
    }
    // Recovery treats a last line that is not JSON as torn; accepting one here would let a
    // restart silently drop an acknowledged event.
    if !recover::is_json(line) {
        return Err(Error::NotJson);
    }
    Ok(())
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Starts a new segment at the current sequence; the old one goes to the syncer.
fn roll(dir: &Path, w: &mut Writer) -> Result<(), Error> {
    let file = segment::create(dir, w.next)
        .map_err(|e| Error::io("creating", segment::name(w.next), e))?;
    let old = std::mem::replace(&mut w.file, Arc::new(file));
    w.sealed.push(old);
    w.base = w.next;
    w.len = 0;
    w.dir_dirty = true;
    Ok(())
}
