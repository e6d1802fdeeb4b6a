//! Counters of the Kafka forwarder for the metrics endpoint. Each counts one fixed occurrence and
//! never carries event content, so they can be exported without labels.

use std::sync::atomic::{AtomicU64, Ordering};

/// Shared between the forwarder (writer) and the metrics endpoint (reader).
#[derive(Debug, Default)]
pub struct Stats {
    published: AtomicU64,
    acked: AtomicU64,
    delivery_errors: AtomicU64,
    resends: AtomicU64,
    backlog: AtomicU64,
    client_errors: AtomicU64,
    unparsed: AtomicU64,
    retention_errors: AtomicU64,
    producer_restarts: AtomicU64,
}

impl Stats {
    /// Records handed to the producer, resends included.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Records the brokers acknowledged (`acks=all`).
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
    /// Records whose delivery failed (they stay in the outbox and are sent again).
    pub fn delivery_errors(&self) -> u64 {
        self.delivery_errors.load(Ordering::Relaxed)
    }
    /// Records sent again after a delivery error; only these can show up twice downstream.
    pub fn resends(&self) -> u64 {
        self.resends.load(Ordering::Relaxed)
    }
    /// Gauge: outbox records not yet committed as delivered (outbox end − committed position).
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }
    /// Errors librdkafka reported about its connections (e.g. all brokers down).
    pub fn client_errors(&self) -> u64 {
        self.client_errors.load(Ordering::Relaxed)
    }
    /// Records published without headers because the line lacked them or was not an object.
    pub fn unparsed(&self) -> u64 {
        self.unparsed.load(Ordering::Relaxed)
    }
    /// Outbox retention runs that failed.
    pub fn retention_errors(&self) -> u64 {
        self.retention_errors.load(Ordering::Relaxed)
    }
    /// Producers rebuilt after a fatal producer error.
    pub fn producer_restarts(&self) -> u64 {
        self.producer_restarts.load(Ordering::Relaxed)
    }

    pub(super) fn count_published(&self, resend: bool) {
        self.published.fetch_add(1, Ordering::Relaxed);
        if resend {
            self.resends.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(super) fn count_acked(&self) {
        self.acked.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_delivery_error(&self) {
        self.delivery_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn set_backlog(&self, n: u64) {
        self.backlog.store(n, Ordering::Relaxed);
    }
    pub(super) fn count_client_error(&self) {
        self.client_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_unparsed(&self) {
        self.unparsed.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_retention_error(&self) {
        self.retention_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_producer_restart(&self) {
        self.producer_restarts.fetch_add(1, Ordering::Relaxed);
    }
}
