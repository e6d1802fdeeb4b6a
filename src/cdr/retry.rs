//! Sans-IO schedule of files to ingest again: a failed ingest (outbox full, I/O error) with
//! doubling backoff, and a file whose last line was held back, at the time its tail may be
//! read as final. The spool watcher yields a file once per change, so without this a failed
//! file would wait for the next restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The first retry's delay; each failure doubles it up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_secs(5);
pub const MAX_DELAY: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Entry {
    feed: usize,
    failures: u32,
    /// `None` while the file is being ingested.
    due: Option<Instant>,
}

/// Files waiting for another ingest, by path.
#[derive(Debug, Default)]
pub struct Retry {
    files: HashMap<PathBuf, Entry>,
}

impl Retry {
    /// The ingest of `path` failed: try again after the backoff; returns the delay.
    pub fn failed(&mut self, path: &Path, feed: usize, now: Instant) -> Duration {
        let entry = self.files.entry(path.to_owned()).or_insert(Entry {
            feed,
            failures: 0,
            due: None,
        });
        let delay = FIRST_DELAY
            .saturating_mul(2u32.saturating_pow(entry.failures))
            .min(MAX_DELAY);
        entry.failures = entry.failures.saturating_add(1);
        entry.feed = feed;
        entry.due = Some(now + delay);
        delay
    }

    /// `path` was read up to a held-back last line: look again after `wait`.
    pub fn held(&mut self, path: &Path, feed: usize, now: Instant, wait: Duration) {
        self.files.insert(
            path.to_owned(),
            Entry {
                feed,
                failures: 0,
                due: Some(now + wait),
            },
        );
    }

    /// `path` was ingested to its end, or is gone.
    pub fn clear(&mut self, path: &Path) {
        self.files.remove(path);
    }

    /// When the next file is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.files.values().filter_map(|e| e.due).min()
    }

    /// The files due at `now` (feed index and path), marked as in progress.
    pub fn take_due(&mut self, now: Instant) -> Vec<(usize, PathBuf)> {
        let mut due: Vec<(usize, PathBuf)> = self
            .files
            .iter_mut()
            .filter(|(_, e)| e.due.is_some_and(|d| d <= now))
            .map(|(p, e)| {
                e.due = None;
                (e.feed, p.clone())
            })
            .collect();
        due.sort();
        due
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_doubling_to_a_cap_and_success_clears() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        let p = Path::new("/spool/a.csv");
        let delays: Vec<u64> = (0..10).map(|_| r.failed(p, 0, t0).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(r.next_due(), Some(t0 + MAX_DELAY));
        assert!(r.take_due(t0 + Duration::from_secs(599)).is_empty());
        assert_eq!(r.take_due(t0 + MAX_DELAY), [(0, p.to_owned())]);
        assert_eq!(r.next_due(), None, "in progress: not due twice");
        r.clear(p);
        assert!(r.is_empty());
        assert_eq!(r.failed(p, 0, t0), FIRST_DELAY, "a new failure starts over");
    }

    #[test]
    fn a_held_tail_is_due_after_its_wait_and_files_are_independent() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        let (a, b) = (Path::new("/s/a.csv"), Path::new("/s/b.csv"));
        r.held(a, 1, t0, Duration::from_secs(900));
        r.failed(b, 0, t0);
        assert_eq!(r.len(), 2);
        assert_eq!(r.take_due(t0 + FIRST_DELAY), [(0, b.to_owned())]);
        assert_eq!(r.next_due(), Some(t0 + Duration::from_secs(900)));
        assert_eq!(
            r.take_due(t0 + Duration::from_secs(900)),
            [(1, a.to_owned())]
        );
    }
}
