//! Counting an occurrence and logging it go through one type, so they cannot drift apart, and the
//! log is rate-limited: a flood (Kafka down, a scanner at the ACL) gives one line per interval with
//! the number suppressed, not one line per event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;

#[derive(Debug)]
pub struct Occurrence {
    interval: Duration,
    last_logged_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Occurrence {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_logged_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; returns `Some(suppressed_since_last_log)` when this one should be
    /// logged. The caller writes the log line with its own fixed fields and message.
    pub fn record(&self, counter: &Counter) -> Option<u64> {
        self.record_n(counter, 1)
    }

    /// As `record`, for one occurrence that counts `n` (lines skipped in one go).
    pub fn record_n(&self, counter: &Counter, n: u64) -> Option<u64> {
        counter.inc_by(n);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let now = u64::try_from(now).unwrap_or(u64::MAX);
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) >= interval
            && self
                .last_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Ten seconds between log lines: for faults that repeat while they last (a broken key store,
/// a damaged segment, a failing purge), one line per interval says it is still going on.
impl Default for Occurrence {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_once_per_interval_but_counts_everything() {
        let occurrence = Occurrence::new(Duration::from_secs(3600));
        let counter = Counter::default();
        let logged = (0..1000)
            .filter(|_| occurrence.record(&counter).is_some())
            .count();
        assert_eq!(logged, 1);
        assert_eq!(counter.get(), 1000);
    }
}
