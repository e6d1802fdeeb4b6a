//! Counters for the metrics endpoint; each counts one fixed occurrence, never carries content.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    appended: AtomicU64,
    bytes: AtomicU64,
    torn_lines_cut: AtomicU64,
    full_refusals: AtomicU64,
    syncs: AtomicU64,
}

impl Stats {
    /// Lines appended since open.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }
    /// Bytes appended since open, line feeds included.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Torn lines cut away by recovery at open.
    pub fn torn_lines_cut(&self) -> u64 {
        self.torn_lines_cut.load(Ordering::Relaxed)
    }
    /// Appends refused with `Error::Full`.
    pub fn full_refusals(&self) -> u64 {
        self.full_refusals.load(Ordering::Relaxed)
    }
    /// fdatasync rounds completed by the background syncer.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    pub(super) fn count_append(&self, lines: u64, bytes: u64) {
        self.appended.fetch_add(lines, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(super) fn count_torn(&self, n: u64) {
        self.torn_lines_cut.fetch_add(n, Ordering::Relaxed);
    }
    pub(super) fn count_full(&self) {
        self.full_refusals.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }
}
