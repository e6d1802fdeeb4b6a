//! Counters of the Kafka forwarder, registered into the process's metrics registry. Each counts
//! one fixed occurrence and never carries event content, so none needs a label.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ops::Occurrence;

/// Shared between the forwarder (writer) and the metrics endpoint and `status` (readers).
#[derive(Debug, Clone)]
pub struct Stats {
    published: Counter,
    acked: Counter,
    delivery_errors: Counter,
    resends: Counter,
    backlog: Gauge,
    client_errors: Counter,
    unparsed: Counter,
    retention_errors: Counter,
    producer_restarts: Counter,
    registry_errors: Counter,
    /// Faults that are counted and logged together (`ops::Occurrence`).
    retention_failed: Arc<Occurrence>,
    registry_failed: Arc<Occurrence>,
    restart_seen: Arc<Occurrence>,
    /// Handing a record to the producer until the brokers acknowledged it.
    delivery_seconds: Histogram,
    /// Unix time of the last acknowledgement (0: none yet), for lag and alerts.
    last_ack: Gauge,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            published: Counter::default(),
            acked: Counter::default(),
            delivery_errors: Counter::default(),
            resends: Counter::default(),
            backlog: Gauge::default(),
            client_errors: Counter::default(),
            unparsed: Counter::default(),
            retention_errors: Counter::default(),
            producer_restarts: Counter::default(),
            registry_errors: Counter::default(),
            retention_failed: Arc::default(),
            registry_failed: Arc::default(),
            restart_seen: Arc::default(),
            delivery_seconds: crate::ops::metrics::latency_buckets(),
            last_ack: Gauge::default(),
        }
    }
}

impl Stats {
    /// Puts every counter into `registry` under `kafka_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("kafka");
        r.register(
            "published",
            "Records handed to the Kafka producer, resends included",
            self.published.clone(),
        );
        r.register(
            "acked",
            "Events acknowledged by Kafka (acks=all)",
            self.acked.clone(),
        );
        r.register(
            "delivery_errors",
            "Kafka delivery failures (each record is sent again)",
            self.delivery_errors.clone(),
        );
        r.register(
            "resends",
            "Records sent again after a delivery error; only these can arrive twice",
            self.resends.clone(),
        );
        r.register(
            "backlog",
            "Events in the outbox not yet acknowledged by Kafka",
            self.backlog.clone(),
        );
        r.register(
            "client_errors",
            "Errors librdkafka reported about its broker connections",
            self.client_errors.clone(),
        );
        r.register(
            "unparsed",
            "Records published without key and headers because the line was not an event object",
            self.unparsed.clone(),
        );
        r.register(
            "retention_errors",
            "Outbox retention runs after delivery that failed",
            self.retention_errors.clone(),
        );
        r.register(
            "producer_restarts",
            "Kafka producers rebuilt after a fatal producer error",
            self.producer_restarts.clone(),
        );
        r.register(
            "schema_registry_errors",
            "Failed attempts to register the event schema (deliveries wait meanwhile)",
            self.registry_errors.clone(),
        );
        r.register(
            "last_ack_timestamp_seconds",
            "Unix time of the last event Kafka acknowledged",
            self.last_ack.clone(),
        );
        r.register(
            "delivery_seconds",
            "Time from handing a record to the producer to its acknowledgement",
            self.delivery_seconds.clone(),
        );
    }

    /// Records handed to the producer, resends included.
    pub fn published(&self) -> u64 {
        self.published.get()
    }
    /// Records the brokers acknowledged (`acks=all`).
    pub fn acked(&self) -> u64 {
        self.acked.get()
    }
    /// Records whose delivery failed (they stay in the outbox and are sent again).
    pub fn delivery_errors(&self) -> u64 {
        self.delivery_errors.get()
    }
    /// Records sent again after a delivery error; only these can show up twice downstream.
    pub fn resends(&self) -> u64 {
        self.resends.get()
    }
    /// Gauge: outbox records not yet committed as delivered (outbox end − committed position).
    pub fn backlog(&self) -> u64 {
        u64::try_from(self.backlog.get()).unwrap_or(0)
    }
    /// Errors librdkafka reported about its connections (e.g. all brokers down).
    pub fn client_errors(&self) -> u64 {
        self.client_errors.get()
    }
    /// Records published without headers because the line lacked them or was not an object.
    pub fn unparsed(&self) -> u64 {
        self.unparsed.get()
    }
    /// Outbox retention runs that failed.
    pub fn retention_errors(&self) -> u64 {
        self.retention_errors.get()
    }
    /// Producers rebuilt after a fatal producer error.
    pub fn producer_restarts(&self) -> u64 {
        self.producer_restarts.get()
    }
    /// Unix seconds of the last acknowledgement, if any.
    pub fn last_ack_unix(&self) -> Option<i64> {
        Some(self.last_ack.get()).filter(|&t| t > 0)
    }

    /// Seconds since Kafka last acknowledged an event while some wait (since `started` if none
    /// was acknowledged yet); 0 while nothing waits.
    pub fn lag_seconds(&self, started: std::time::Instant) -> u64 {
        if self.backlog() == 0 {
            return 0;
        }
        match self.last_ack_unix() {
            Some(at) => u64::try_from(chrono::Utc::now().timestamp() - at).unwrap_or(0),
            None => started.elapsed().as_secs(),
        }
    }

    pub(super) fn count_published(&self, resend: bool) {
        self.published.inc();
        if resend {
            self.resends.inc();
        }
    }
    pub(super) fn count_acked(&self, after: std::time::Duration) {
        self.acked.inc();
        self.delivery_seconds.observe(after.as_secs_f64());
        self.last_ack.set(chrono::Utc::now().timestamp());
    }
    pub(super) fn count_delivery_error(&self) {
        self.delivery_errors.inc();
    }
    pub(super) fn set_backlog(&self, n: u64) {
        self.backlog.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    pub(super) fn count_client_error(&self) {
        self.client_errors.inc();
    }
    pub(super) fn count_unparsed(&self) {
        self.unparsed.inc();
    }
    /// `Some(suppressed)` when this failure is to be logged.
    pub(super) fn count_retention_error(&self) -> Option<u64> {
        self.retention_failed.record(&self.retention_errors)
    }
    /// `Some(suppressed)` when this failure is to be logged.
    pub(super) fn count_registry_error(&self) -> Option<u64> {
        self.registry_failed.record(&self.registry_errors)
    }
    /// `Some(suppressed)` when this restart is to be logged.
    pub(super) fn count_producer_restart(&self) -> Option<u64> {
        self.restart_seen.record(&self.producer_restarts)
    }
}
