//! Whether the daemon is ready (`GET /ready`, `calltrackd status`): every transport and the
//! timer loop run, the outbox takes events, the Kafka forwarder runs and keeps up, the CDR feeds
//! run, and no shutdown is under way. Reasons are fixed words.

use std::sync::Arc;

use super::supervise::{Board, Role};
use crate::flow::CALL_RESERVE;
use crate::ops::http::Readiness;
use crate::outbox::Outbox;
use crate::sink::Stats;
use crate::sip::edge::Edge;

pub(super) struct Ready {
    pub board: Arc<Board>,
    pub edge: Arc<Edge>,
    pub outbox: Outbox,
    /// The forwarder's counters; `None` without `[kafka]`.
    pub forwarder: Option<Arc<Stats>>,
    /// `[ops] ready_max_lag_seconds`.
    pub max_lag_seconds: u64,
    pub started: std::time::Instant,
}

impl Readiness for Ready {
    fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.edge.is_draining() {
            reasons.push("shutting down".to_owned());
        }
        for task in self.board.down(&[Role::Critical, Role::Ready]) {
            reasons.push(format!("{task} not running"));
        }
        match self.outbox.usage() {
            Err(_) => reasons.push("outbox not readable".to_owned()),
            Ok(u) if u.poisoned => reasons.push("outbox not writable".to_owned()),
            Ok(u) if u.no_space => reasons.push("outbox file system full".to_owned()),
            // The edge's own rule: room for one more call's events.
            Ok(u) if !u.has_room(CALL_RESERVE) => reasons.push("outbox full".to_owned()),
            Ok(_) => {}
        }
        if let Some(stats) = &self.forwarder {
            let lag = stats.lag_seconds(self.started);
            if lag > self.max_lag_seconds {
                reasons.push(format!(
                    "kafka delivery lagging ({lag} s without an acknowledgement)"
                ));
            }
        }
        reasons
    }
}
