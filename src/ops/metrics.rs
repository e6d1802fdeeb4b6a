//! Process-wide counters with fixed names and fixed label values only: nothing a caller sends can
//! become a label, so no number, address or header text can reach a metrics backend. Rendered in
//! the Prometheus text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Raises the count to `v`, for counts kept elsewhere (the transaction table's own stats).
    pub fn set_max(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Request methods as metric labels: a closed set, so unknown methods cannot mint labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLabel {
    Invite,
    Ack,
    Cancel,
    Options,
    Bye,
    Other,
}

impl MethodLabel {
    const ALL: [(MethodLabel, &'static str); 6] = [
        (MethodLabel::Invite, "INVITE"),
        (MethodLabel::Ack, "ACK"),
        (MethodLabel::Cancel, "CANCEL"),
        (MethodLabel::Options, "OPTIONS"),
        (MethodLabel::Bye, "BYE"),
        (MethodLabel::Other, "other"),
    ];
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub sip_requests: [Counter; 6],
    /// Responses sent by class: 1xx..6xx.
    pub sip_responses: [Counter; 6],
    pub sip_retransmissions_absorbed: Counter,
    pub sip_finals_retransmitted: Counter,
    pub sip_ack_timeouts: Counter,
    pub sip_parse_errors: Counter,
    pub sip_dropped_unanswerable: Counter,
    pub sip_acl_denied: Counter,
    pub sip_oversize: Counter,
    pub sip_overloaded: Counter,
    pub sip_transactions: Gauge,
    pub tcp_connections: Gauge,
    pub calls_offered: Counter,
    pub calls_redirected: Counter,
    pub events_written: Counter,
    pub outbox_full: Counter,
    pub outbox_errors: Counter,
    pub kafka_acked: Counter,
    pub kafka_delivery_errors: Counter,
    pub kafka_backlog: Gauge,
}

impl Metrics {
    pub fn request(&self, method: MethodLabel) {
        let i = MethodLabel::ALL
            .iter()
            .position(|(m, _)| *m == method)
            .unwrap_or(5);
        self.sip_requests[i].inc();
    }

    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 6) - 1;
        self.sip_responses[class].inc();
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "calltrackd_sip_retransmissions_absorbed_total",
            "Request retransmissions absorbed by a transaction.",
            self.sip_retransmissions_absorbed.get(),
        );
        counter(
            "calltrackd_sip_finals_retransmitted_total",
            "Final responses retransmitted (Timer G).",
            self.sip_finals_retransmitted.get(),
        );
        counter(
            "calltrackd_sip_ack_timeouts_total",
            "INVITE transactions that never got their ACK (Timer H).",
            self.sip_ack_timeouts.get(),
        );
        counter(
            "calltrackd_sip_parse_errors_total",
            "Messages that failed to parse.",
            self.sip_parse_errors.get(),
        );
        counter(
            "calltrackd_sip_dropped_unanswerable_total",
            "Malformed messages dropped because no response could be formed.",
            self.sip_dropped_unanswerable.get(),
        );
        counter(
            "calltrackd_sip_acl_denied_total",
            "Messages from sources outside the trunk ACL.",
            self.sip_acl_denied.get(),
        );
        counter(
            "calltrackd_sip_oversize_total",
            "Messages over sip.max_message_bytes.",
            self.sip_oversize.get(),
        );
        counter(
            "calltrackd_sip_overloaded_total",
            "Requests refused with 503 because the transaction table was full.",
            self.sip_overloaded.get(),
        );
        counter(
            "calltrackd_calls_offered_total",
            "INVITEs for tracking numbers.",
            self.calls_offered.get(),
        );
        counter(
            "calltrackd_calls_redirected_total",
            "Calls redirected with 302.",
            self.calls_redirected.get(),
        );
        counter(
            "calltrackd_events_written_total",
            "Events appended to the outbox.",
            self.events_written.get(),
        );
        counter(
            "calltrackd_outbox_full_total",
            "Calls refused because the outbox was full.",
            self.outbox_full.get(),
        );
        counter(
            "calltrackd_outbox_errors_total",
            "Outbox write failures.",
            self.outbox_errors.get(),
        );
        counter(
            "calltrackd_kafka_acked_total",
            "Events acknowledged by Kafka.",
            self.kafka_acked.get(),
        );
        counter(
            "calltrackd_kafka_delivery_errors_total",
            "Kafka delivery failures (each is retried).",
            self.kafka_delivery_errors.get(),
        );
        let _ = writeln!(
            out,
            "# HELP calltrackd_kafka_backlog Events in the outbox not yet acknowledged by Kafka.\n# TYPE calltrackd_kafka_backlog gauge\ncalltrackd_kafka_backlog {}",
            self.kafka_backlog.get()
        );
        let _ = writeln!(
            out,
            "# HELP calltrackd_sip_requests_total SIP requests received by method.\n# TYPE calltrackd_sip_requests_total counter"
        );
        for ((_, label), c) in MethodLabel::ALL.iter().zip(&self.sip_requests) {
            let _ = writeln!(
                out,
                "calltrackd_sip_requests_total{{method=\"{label}\"}} {}",
                c.get()
            );
        }
        let _ = writeln!(
            out,
            "# HELP calltrackd_sip_responses_total SIP responses sent by class.\n# TYPE calltrackd_sip_responses_total counter"
        );
        for (i, c) in self.sip_responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "calltrackd_sip_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.get()
            );
        }
        let _ = writeln!(
            out,
            "# HELP calltrackd_sip_transactions Live server transactions.\n# TYPE calltrackd_sip_transactions gauge\ncalltrackd_sip_transactions {}",
            self.sip_transactions.get()
        );
        let _ = writeln!(
            out,
            "# HELP calltrackd_tcp_connections Open TCP connections.\n# TYPE calltrackd_tcp_connections gauge\ncalltrackd_tcp_connections {}",
            self.tcp_connections.get()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_fixed_labels_only() {
        let m = Metrics::default();
        m.request(MethodLabel::Invite);
        m.response(302);
        let text = m.render();
        assert!(text.contains("calltrackd_sip_requests_total{method=\"INVITE\"} 1"));
        assert!(text.contains("calltrackd_sip_responses_total{class=\"3xx\"} 1"));
    }
}
