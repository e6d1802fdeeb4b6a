//! The call flow's metrics (calls offered and redirected, events written, outbox refusals,
//! announcements, early-media refusals), registered into the process's one registry
//! (`ops::metrics`). Labels come from closed enums only. Each metric's name and help are
//! declared once, here.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Why no announcement was sent to an SDP's address (`media::destinations::Refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaRefusalLabel {
    OutsideNetworks,
    StreamCap,
    SourceCap,
}

impl EncodeLabelValue for MediaRefusalLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::OutsideNetworks => "outside_networks",
                Self::StreamCap => "stream_cap",
                Self::SourceCap => "source_cap",
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MediaRefusalLabels {
    pub reason: MediaRefusalLabel,
}

/// The call flow's metrics. Cheap to clone (every metric is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Announcements not sent because the SDP's address was refused.
    pub rtp_destinations_refused: Family<MediaRefusalLabels, Counter>,
    pub prack_timeouts: Counter,
    /// RTP packets at an announcing call's port from a source other than the latched one.
    pub rtp_foreign_packets: Counter,
    pub calls_offered: Counter,
    pub calls_redirected: Counter,
    pub events_written: Counter,
    pub outbox_full: Counter,
    pub outbox_errors: Counter,
    /// A pseudonym key could not be made, loaded or rotated (calls refused, or pruning failed).
    pub key_failures: Counter,
    /// How much of the announcement callers heard.
    announcement_seconds: Histogram,
}

impl Stats {
    /// The flow's metrics, registered into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            rtp_destinations_refused: Family::default(),
            prack_timeouts: Counter::default(),
            rtp_foreign_packets: Counter::default(),
            calls_offered: Counter::default(),
            calls_redirected: Counter::default(),
            events_written: Counter::default(),
            outbox_full: Counter::default(),
            outbox_errors: Counter::default(),
            key_failures: Counter::default(),
            announcement_seconds: Histogram::new([
                0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
            ]),
        };
        let r = registry;
        r.register(
            "rtp_destinations_refused",
            "Announcements not sent to an SDP's address: outside media.allowed_networks, or that address at its stream cap",
            m.rtp_destinations_refused.clone(),
        );
        r.register(
            "sip_prack_timeouts",
            "Reliable provisional responses never acknowledged by PRACK (call refused 504)",
            m.prack_timeouts.clone(),
        );
        r.register(
            "rtp_foreign_packets",
            "Packets at an announcement's RTP port from other than the latched source, ignored",
            m.rtp_foreign_packets.clone(),
        );
        r.register(
            "calls_offered",
            "INVITEs for tracking numbers",
            m.calls_offered.clone(),
        );
        r.register(
            "calls_redirected",
            "Calls redirected with 302",
            m.calls_redirected.clone(),
        );
        r.register(
            "events_written",
            "Events appended to the outbox by the SIP edge",
            m.events_written.clone(),
        );
        r.register(
            "outbox_full",
            "Calls refused because the outbox was full",
            m.outbox_full.clone(),
        );
        r.register(
            "outbox_errors",
            "Calls refused because the outbox write failed",
            m.outbox_errors.clone(),
        );
        r.register(
            "key_failures",
            "Pseudonym key failures: a key could not be created or loaded (the call was refused) or expired keys could not be shredded",
            m.key_failures.clone(),
        );
        r.register(
            "announcement_played_seconds",
            "Seconds of the disclosure announcement played per announced call",
            m.announcement_seconds.clone(),
        );
        // Every reason exists from the start, at zero (see `sip::Stats`).
        for reason in [
            MediaRefusalLabel::OutsideNetworks,
            MediaRefusalLabel::StreamCap,
            MediaRefusalLabel::SourceCap,
        ] {
            let _ = m.media_refused(reason);
        }
        m
    }

    pub fn media_refused(&self, reason: MediaRefusalLabel) -> Counter {
        self.rtp_destinations_refused
            .get_or_create(&MediaRefusalLabels { reason })
            .clone()
    }

    pub fn announced(&self, played: std::time::Duration) {
        self.announcement_seconds.observe(played.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::{registry, render};

    #[test]
    fn media_refusals_exist_at_zero_for_every_reason() {
        let mut registry = registry();
        let m = Stats::register(&mut registry);
        m.media_refused(MediaRefusalLabel::StreamCap).inc();
        m.announced(std::time::Duration::from_secs(3));
        let text = render(&registry);
        for series in [
            "calltrackd_rtp_destinations_refused_total{reason=\"outside_networks\"} 0",
            "calltrackd_rtp_destinations_refused_total{reason=\"stream_cap\"} 1",
            "calltrackd_rtp_destinations_refused_total{reason=\"source_cap\"} 0",
            "calltrackd_announcement_played_seconds_bucket{le=\"3.0\"} 1",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
