//! The running daemon's answer to `calltrackd status`: a snapshot gathered from the components
//! at the moment of the request.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::FORWARDER;
use super::ready::Ready;
use super::supervise::Board;
use crate::call::Recorder;
use crate::cdr::Feed;
use crate::ops::control::{Handler, SubjectNumber, SubjectReceipt, SubjectRequest};
use crate::ops::http::Readiness;
use crate::ops::status::{
    Calls, FeedStatus, ForwarderState, ForwarderStatus, Listener, OutboxStatus, Status, TaskStatus,
};
use crate::outbox::Outbox;
use crate::sink::Stats;
use crate::sip::edge::Edge;
use crate::sip::stats::StreamLabel;

pub(super) struct Source {
    pub started: std::time::Instant,
    pub edge: Arc<Edge>,
    pub outbox: Outbox,
    pub recorder: Arc<Recorder>,
    /// The forwarder's counters; `None` without `[kafka]`.
    pub forwarder: Option<Arc<Stats>>,
    pub board: Arc<Board>,
    pub ready: Arc<Ready>,
    pub listeners: Vec<Listener>,
    pub feeds: Vec<Feed>,
    pub subjects: Arc<super::subject::Subjects>,
}

impl Handler for Source {
    fn subject<'a>(
        &'a self,
        request: SubjectRequest,
        number: &'a SubjectNumber,
    ) -> BoxFuture<'a, Result<SubjectReceipt, String>> {
        Box::pin(self.subjects.clone().handle(request, number))
    }

    fn status(&self) -> Status {
        let usage = self.outbox.usage().ok();
        let metrics = self.edge.metrics();
        let (forwarder, depth, lag_seconds) = match &self.forwarder {
            None => (
                ForwarderStatus {
                    state: ForwarderState::Off,
                    acked: 0,
                    delivery_errors: 0,
                    resends: 0,
                },
                0,
                0,
            ),
            Some(stats) => {
                let running = self
                    .board
                    .tasks()
                    .iter()
                    .any(|t| t.name == FORWARDER && t.running());
                (
                    ForwarderStatus {
                        state: if running {
                            ForwarderState::Running
                        } else {
                            ForwarderState::Stopped
                        },
                        acked: stats.acked(),
                        delivery_errors: stats.delivery_errors(),
                        resends: stats.resends(),
                    },
                    stats.backlog(),
                    stats.lag_seconds(self.started),
                )
            }
        };
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            listeners: self.listeners.clone(),
            calls: Calls {
                in_flight: self.edge.calls_in_flight(),
                announcing: self.edge.calls_announcing(),
                transactions: self.edge.transactions(),
                tcp_connections: metrics.connections(StreamLabel::Tcp).get(),
                tls_connections: metrics.connections(StreamLabel::Tls).get(),
            },
            outbox: OutboxStatus {
                end: usage.map_or(0, |u| u.end.0),
                bytes: usage.map_or(0, |u| u.bytes),
                max_bytes: usage.map_or(0, |u| u.max_bytes),
                poisoned: usage.is_none_or(|u| u.poisoned),
                no_space: usage.is_some_and(|u| u.no_space),
                depth,
                lag_seconds,
            },
            forwarder,
            feeds: self
                .feeds
                .iter()
                .map(|f| FeedStatus {
                    name: f.name.clone(),
                    format: f.format.clone(),
                    spool_dir: f.spool_dir.display().to_string(),
                })
                .collect(),
            key_id: self.recorder.keyring().key_id(chrono::Utc::now()),
            not_ready: self.ready.not_ready(),
            tasks: self
                .board
                .tasks()
                .iter()
                .map(|t| TaskStatus {
                    name: t.name.to_owned(),
                    running: t.running(),
                    failures: t.failures(),
                })
                .collect(),
        }
    }
}
