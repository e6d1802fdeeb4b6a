//! The process's one metrics registry (`prometheus-client`, which also does the exposition
//! format) and what every component's metrics share. Each component declares its metrics,
//! their names and help once, next to its code, and registers them here at start: `sip::Stats`,
//! `flow::Stats`, `outbox::Stats`, the Kafka forwarder's, CDR ingest's, the evidence writer's
//! and the supervisor's. Labels come from closed enums only: nothing a caller sends can become
//! a label, so no number, address or header text can reach a metrics backend.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every metric name starts with this (`calltrackd_…`).
pub const PREFIX: &str = "calltrackd";

/// A fresh registry with the process prefix.
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// The OpenMetrics text of everything registered.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String cannot fail; an error would only mean a metric wrote badly-formed
    // text, which the registry's own types never do.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The Content-Type of `render`'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Raises `counter` to `total`, for totals a sans-IO core keeps itself (the transaction
/// table's stats): the core is the only writer of that count, so the difference is what
/// happened since the last mirror.
pub fn raise_to(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// Buckets for durations of a SIP exchange: 1 ms to about 16 s.
pub fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_to_mirrors_a_core_total() {
        let c = Counter::default();
        raise_to(&c, 5);
        raise_to(&c, 3);
        raise_to(&c, 7);
        assert_eq!(c.get(), 7);
    }
}
