//! Counters of the outbox, registered into the process's metrics registry; each counts one fixed
//! occurrence and never carries content.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Outbox;

#[derive(Debug, Clone, Default)]
pub struct Stats {
    appended: Counter,
    bytes: Counter,
    torn_lines_cut: Counter,
    full_refusals: Counter,
    syncs: Counter,
    corrupt_lines: Counter,
    missing_lines: Counter,
    position_resets: Counter,
    /// Damage a reader skipped and position files it could not use, counted and logged
    /// together: a damaged segment that several readers meet is logged once per interval.
    corrupt_seen: std::sync::Arc<crate::ops::Occurrence>,
    missing_seen: std::sync::Arc<crate::ops::Occurrence>,
    reset_seen: std::sync::Arc<crate::ops::Occurrence>,
}

/// The outbox's size and state, read at each scrape.
#[derive(Debug)]
struct UsageCollector(Outbox);

impl Collector for UsageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(usage) = self.0.usage() else {
            return Ok(());
        };
        let gauges = [
            ("bytes", "Bytes of all outbox segments on disk", usage.bytes),
            (
                "max_bytes",
                "outbox.max_bytes: calls are refused with 503 beyond it",
                usage.max_bytes,
            ),
            (
                "end_position",
                "Position the next event gets (events ever written)",
                usage.end.0,
            ),
            (
                "poisoned",
                "1 when a failed fsync stopped all writes until a restart",
                u64::from(usage.poisoned),
            ),
            (
                "no_space",
                "1 while the file system is full after a failed write: calls get 503",
                u64::from(usage.no_space),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

impl Stats {
    /// Puts every counter of `outbox`, and its size, into `registry` under `outbox_…`.
    pub fn register(outbox: &Outbox, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("outbox");
        r.register_collector(Box::new(UsageCollector(outbox.clone())));
        let stats = outbox.stats();
        Self::register_counters(stats, r);
    }

    fn register_counters(&self, r: &mut Registry) {
        r.register(
            "appended",
            "Event lines appended to the outbox since start",
            self.appended.clone(),
        );
        r.register(
            "appended_bytes",
            "Bytes appended to the outbox since start, line feeds included",
            self.bytes.clone(),
        );
        r.register(
            "torn_lines_cut",
            "Torn lines cut away by crash recovery at open",
            self.torn_lines_cut.clone(),
        );
        r.register(
            "full_refusals",
            "Appends refused because the outbox was at max_bytes",
            self.full_refusals.clone(),
        );
        r.register(
            "corrupt_lines_skipped",
            "Segment lines readers skipped because they were not one JSON record (per reader)",
            self.corrupt_lines.clone(),
        );
        r.register(
            "missing_lines_skipped",
            "Positions readers skipped because a sealed segment ended short of the next (per reader)",
            self.missing_lines.clone(),
        );
        r.register(
            "reader_position_resets",
            "Reader position files that were unreadable or beyond the end; the reader restarted at the oldest retained segment",
            self.position_resets.clone(),
        );
        r.register(
            "syncs",
            "fdatasync rounds completed (group commit)",
            self.syncs.clone(),
        );
    }

    /// Lines appended since open.
    pub fn appended(&self) -> u64 {
        self.appended.get()
    }
    /// Bytes appended since open, line feeds included.
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }
    /// Torn lines cut away by recovery at open.
    pub fn torn_lines_cut(&self) -> u64 {
        self.torn_lines_cut.get()
    }
    /// Appends refused with `Error::Full`.
    pub fn full_refusals(&self) -> u64 {
        self.full_refusals.get()
    }
    /// Corrupt segment lines skipped by readers (each reader counts its own).
    pub fn corrupt_lines_skipped(&self) -> u64 {
        self.corrupt_lines.get()
    }
    /// Positions skipped by readers because a sealed segment ended short of the next one.
    pub fn missing_lines_skipped(&self) -> u64 {
        self.missing_lines.get()
    }
    /// Reader position files that could not be used.
    pub fn reader_position_resets(&self) -> u64 {
        self.position_resets.get()
    }
    /// fdatasync rounds completed by the background syncer.
    pub fn syncs(&self) -> u64 {
        self.syncs.get()
    }

    pub(super) fn count_append(&self, lines: u64, bytes: u64) {
        self.appended.inc_by(lines);
        self.bytes.inc_by(bytes);
    }
    pub(super) fn count_torn(&self, n: u64) {
        self.torn_lines_cut.inc_by(n);
    }
    /// These return `Some(suppressed)` when the occurrence is to be logged (`ops::Occurrence`).
    pub(super) fn count_corrupt_lines(&self, n: u64) -> Option<u64> {
        self.corrupt_seen.record_n(&self.corrupt_lines, n)
    }
    pub(super) fn count_missing_lines(&self, n: u64) -> Option<u64> {
        self.missing_seen.record_n(&self.missing_lines, n)
    }
    pub(super) fn count_position_reset(&self) -> Option<u64> {
        self.reset_seen.record(&self.position_resets)
    }
    pub(super) fn count_full(&self) {
        self.full_refusals.inc();
    }
    pub(super) fn count_sync(&self) {
        self.syncs.inc();
    }
}
