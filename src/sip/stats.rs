//! The SIP edge's metrics (transports, transactions, responses, abuse), registered into the
//! process's one registry (`ops::metrics`). Labels come from closed enums only: nothing a peer
//! sends can become a label, so no number, address or header text can reach a metrics backend.
//! Each metric's name and help are declared once, here.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ops::metrics::latency_buckets;

/// Request methods as metric labels: a closed set, so unknown methods cannot mint labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodLabel {
    Invite,
    Ack,
    Cancel,
    Options,
    Bye,
    Info,
    Prack,
    Other,
}

impl MethodLabel {
    pub const ALL: [MethodLabel; 8] = [
        Self::Invite,
        Self::Ack,
        Self::Cancel,
        Self::Options,
        Self::Bye,
        Self::Info,
        Self::Prack,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Bye => "BYE",
            Self::Info => "INFO",
            Self::Prack => "PRACK",
            Self::Other => "other",
        }
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// A response's status class, `1xx` … `6xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusClass(u8);

impl StatusClass {
    pub fn of(status: u16) -> Self {
        // Clamped, so a status outside 100..=699 cannot mint a seventh label.
        Self(u8::try_from((status / 100).clamp(1, 6)).unwrap_or(6))
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_fmt(encoder, format_args!("{}xx", self.0))
    }
}

/// Stream transports, for connection gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamLabel {
    Tcp,
    Tls,
}

impl EncodeLabelValue for StreamLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Tcp => "tcp",
                Self::Tls => "tls",
            },
        )
    }
}

/// Which rate-limit budget a refused message drew from (`sip::limit::Class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceLabel {
    Trusted,
    Untrusted,
}

impl EncodeLabelValue for SourceLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Trusted => "trusted",
                Self::Untrusted => "untrusted",
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: SourceLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: MethodLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: StatusClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: StreamLabel,
}

/// The SIP edge's metrics. Cheap to clone (every metric is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Stats {
    pub sip_requests: Family<MethodLabels, Counter>,
    pub sip_responses: Family<ClassLabels, Counter>,
    /// The families' counters by label, taken once at registration: counting on the hot path
    /// needs no lock or hash lookup.
    by_method: [Counter; 8],
    by_class: [Counter; 6],
    pub sip_retransmissions_absorbed: Counter,
    pub sip_finals_retransmitted: Counter,
    pub sip_ack_timeouts: Counter,
    pub sip_proceeding_timeouts: Counter,
    pub sip_parse_errors: Counter,
    pub sip_dropped_unanswerable: Counter,
    pub sip_acl_denied: Counter,
    pub sip_oversize: Counter,
    pub sip_overloaded: Counter,
    /// New INVITEs refused 503 because the transaction table's responses were over budget.
    pub sip_transaction_budget_refusals: Counter,
    /// Messages and connections dropped by the per-source rate limit, before parsing.
    pub sip_rate_limited: Family<SourceLabels, Counter>,
    /// Messages from known scanner User-Agents, dropped unanswered.
    pub sip_scanners_dropped: Counter,
    pub sip_write_queue_full: Counter,
    /// RFC 5626 CRLF pongs sent for double-CRLF pings on stream connections.
    pub sip_keepalive_pongs: Counter,
    /// Requests answered 482 as merged (RFC 3261 §8.2.2.2).
    pub sip_merged_requests: Counter,
    /// Responses sent over a new TCP connection because the request's had closed (§18.2.2).
    pub sip_stream_redials: Counter,
    pub sip_transactions: Gauge,
    pub connections: Family<TransportLabels, Gauge>,
    pub tls_handshake_failures: Counter,
    pub reliable_provisionals_retransmitted: Counter,
    /// INFO for an announcing call that did not carry its early dialog's tags and CSeq.
    pub info_outside_dialog: Counter,
    /// INVITE arrival to its final response, by the final's class.
    time_to_final: Family<ClassLabels, Histogram, fn() -> Histogram>,
    /// `time_to_final` by class (3xx..6xx), taken at registration.
    final_by_class: Vec<Histogram>,
}

impl Stats {
    /// The edge's metrics, registered into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let mut m = Self {
            sip_requests: Family::default(),
            sip_responses: Family::default(),
            by_method: Default::default(),
            by_class: Default::default(),
            sip_retransmissions_absorbed: Counter::default(),
            sip_finals_retransmitted: Counter::default(),
            sip_ack_timeouts: Counter::default(),
            sip_proceeding_timeouts: Counter::default(),
            sip_parse_errors: Counter::default(),
            sip_dropped_unanswerable: Counter::default(),
            sip_acl_denied: Counter::default(),
            sip_oversize: Counter::default(),
            sip_overloaded: Counter::default(),
            sip_transaction_budget_refusals: Counter::default(),
            sip_rate_limited: Family::default(),
            sip_scanners_dropped: Counter::default(),
            sip_write_queue_full: Counter::default(),
            sip_keepalive_pongs: Counter::default(),
            sip_merged_requests: Counter::default(),
            sip_stream_redials: Counter::default(),
            sip_transactions: Gauge::default(),
            connections: Family::default(),
            tls_handshake_failures: Counter::default(),
            reliable_provisionals_retransmitted: Counter::default(),
            info_outside_dialog: Counter::default(),
            time_to_final: Family::new_with_constructor(latency_buckets),
            final_by_class: Vec::new(),
        };
        let r = registry;
        r.register(
            "sip_requests",
            "SIP requests received, by method",
            m.sip_requests.clone(),
        );
        r.register(
            "sip_responses",
            "SIP responses sent, by class",
            m.sip_responses.clone(),
        );
        r.register(
            "sip_retransmissions_absorbed",
            "Request retransmissions absorbed by a transaction",
            m.sip_retransmissions_absorbed.clone(),
        );
        r.register(
            "sip_finals_retransmitted",
            "Final responses retransmitted (Timer G)",
            m.sip_finals_retransmitted.clone(),
        );
        r.register(
            "sip_ack_timeouts",
            "INVITE transactions that never got their ACK (Timer H)",
            m.sip_ack_timeouts.clone(),
        );
        r.register(
            "sip_proceeding_timeouts",
            "Transactions given up because no final response was made in time",
            m.sip_proceeding_timeouts.clone(),
        );
        r.register(
            "sip_parse_errors",
            "Messages that failed to parse (TCP and TLS framing errors included)",
            m.sip_parse_errors.clone(),
        );
        r.register(
            "sip_dropped_unanswerable",
            "Malformed messages dropped because no response could be formed",
            m.sip_dropped_unanswerable.clone(),
        );
        r.register(
            "sip_acl_denied",
            "Datagrams and connections from outside the trunk ACL",
            m.sip_acl_denied.clone(),
        );
        r.register(
            "sip_oversize",
            "Messages over sip.max_message_bytes",
            m.sip_oversize.clone(),
        );
        r.register(
            "sip_overloaded",
            "Requests refused with 503 because the transaction table was full",
            m.sip_overloaded.clone(),
        );
        r.register(
            "sip_transaction_budget_refusals",
            "New INVITEs refused with 503 because the transaction table's retained responses were over sip.max_transaction_bytes",
            m.sip_transaction_budget_refusals.clone(),
        );
        r.register(
            "sip_rate_limited",
            "Datagrams, stream messages and connections dropped by the per-source rate limit, by source class",
            m.sip_rate_limited.clone(),
        );
        r.register(
            "sip_scanners_dropped",
            "Messages from known SIP scanner User-Agents, dropped unanswered",
            m.sip_scanners_dropped.clone(),
        );
        r.register(
            "sip_write_queue_full",
            "Responses not delivered on a stream connection: its writer was full, or it closed and no new one could be opened",
            m.sip_write_queue_full.clone(),
        );
        r.register(
            "sip_stream_redials",
            "Responses sent over a new TCP connection because the request's had closed (RFC 3261 18.2.2)",
            m.sip_stream_redials.clone(),
        );
        r.register(
            "sip_merged_requests",
            "Requests answered 482 Loop Detected: the same request arrived by another path",
            m.sip_merged_requests.clone(),
        );
        r.register(
            "sip_keepalive_pongs",
            "Single-CRLF pongs sent for double-CRLF keepalive pings on TCP/TLS (RFC 5626)",
            m.sip_keepalive_pongs.clone(),
        );
        r.register(
            "sip_transactions",
            "Live server transactions",
            m.sip_transactions.clone(),
        );
        r.register(
            "sip_connections",
            "Open stream connections, by transport",
            m.connections.clone(),
        );
        r.register(
            "sip_tls_handshake_failures",
            "TLS connections that failed or timed out in the handshake",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "sip_reliable_provisionals_retransmitted",
            "Reliable provisional responses (RFC 3262) sent again while awaiting PRACK",
            m.reliable_provisionals_retransmitted.clone(),
        );
        r.register(
            "sip_info_outside_dialog",
            "INFO requests for an announcing call refused 481: not in its early dialog",
            m.info_outside_dialog.clone(),
        );
        r.register(
            "sip_invite_time_to_final_seconds",
            "Time from an INVITE's arrival to its final response, by class",
            m.time_to_final.clone(),
        );
        // Every label of the closed sets exists from the start, at zero: rate() and alerts see
        // a series before its first occurrence, and dashboards have no gaps.
        for (i, method) in MethodLabel::ALL.into_iter().enumerate() {
            m.by_method[i] = m
                .sip_requests
                .get_or_create(&MethodLabels { method })
                .clone();
        }
        for (i, status) in [100, 200, 300, 400, 500, 600].into_iter().enumerate() {
            let class = StatusClass::of(status);
            m.by_class[i] = m
                .sip_responses
                .get_or_create(&ClassLabels { class })
                .clone();
            if status >= 300 {
                let histogram = m
                    .time_to_final
                    .get_or_create(&ClassLabels { class })
                    .clone();
                m.final_by_class.push(histogram);
            }
        }
        for transport in [StreamLabel::Tcp, StreamLabel::Tls] {
            let _ = m.connections(transport);
        }
        for source in [SourceLabel::Trusted, SourceLabel::Untrusted] {
            let _ = m.rate_limited(source);
        }
        m
    }

    pub fn rate_limited(&self, source: SourceLabel) -> Counter {
        self.sip_rate_limited
            .get_or_create(&SourceLabels { source })
            .clone()
    }

    pub fn request(&self, method: MethodLabel) {
        let i = MethodLabel::ALL
            .iter()
            .position(|m| *m == method)
            .unwrap_or(MethodLabel::ALL.len() - 1);
        self.by_method[i].inc();
    }

    pub fn response(&self, status: u16) {
        self.by_class[usize::from(StatusClass::of(status).0) - 1].inc();
    }

    pub fn final_after(&self, status: u16, elapsed: std::time::Duration) {
        // Finals of an INVITE are 3xx..6xx here; anything else has no histogram.
        let i = usize::from(StatusClass::of(status).0).checked_sub(3);
        if let Some(histogram) = i.and_then(|i| self.final_by_class.get(i)) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    pub fn connections(&self, transport: StreamLabel) -> Gauge {
        self.connections
            .get_or_create(&TransportLabels { transport })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::{registry, render};

    #[test]
    fn labels_come_from_closed_sets() {
        let mut registry = registry();
        let m = Stats::register(&mut registry);
        m.request(MethodLabel::Invite);
        m.response(302);
        m.response(999);
        m.final_after(302, std::time::Duration::from_millis(3));
        m.connections(StreamLabel::Tls).inc();
        let text = render(&registry);
        assert!(text.contains("calltrackd_sip_requests_total{method=\"INVITE\"} 1"));
        assert!(text.contains("calltrackd_sip_responses_total{class=\"3xx\"} 1"));
        assert!(text.contains("calltrackd_sip_responses_total{class=\"6xx\"} 1"));
        assert!(text.contains("calltrackd_sip_connections{transport=\"tls\"} 1"));
        assert!(
            text.contains(
                "calltrackd_sip_invite_time_to_final_seconds_bucket{le=\"0.004\",class=\"3xx\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn abuse_counters_exist_at_zero_for_every_label() {
        let mut registry = registry();
        let m = Stats::register(&mut registry);
        m.rate_limited(SourceLabel::Untrusted).inc();
        let text = render(&registry);
        for series in [
            "calltrackd_sip_rate_limited_total{source=\"trusted\"} 0",
            "calltrackd_sip_rate_limited_total{source=\"untrusted\"} 1",
            "calltrackd_sip_scanners_dropped_total 0",
            "calltrackd_sip_transaction_budget_refusals_total 0",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
