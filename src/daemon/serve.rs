//! Running the daemon: the supervised task set in its three stop groups (background loops at
//! once; transports, timer loop and operator endpoints after the drain; evidence writer and
//! forwarder last), SIGHUP reloads, and the ordered shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::loops::{self, Housekeeping};
use super::supervise::{Role, TaskError, infallible, supervise};
use super::{Daemon, FORWARDER, ready, status};
use crate::config::{self, Config};
use crate::evidence;
use crate::ops;
use crate::outbox::Outbox;
use crate::sink::Forwarder;
use crate::sip;

impl Daemon {
    /// Serves until `shutdown` is cancelled, then stops taking calls, lets the calls in progress
    /// finish while the transports still run, stops them, and makes the outbox durable.
    /// Configs arriving on `reloads` (SIGHUP) are applied to new calls. Every long-running task
    /// is supervised: restarted after an error or a panic, and shown on the board `/ready`, the
    /// watchdog and `status` read.
    pub async fn serve(
        mut self,
        shutdown: CancellationToken,
        mut reloads: tokio::sync::mpsc::Receiver<Config>,
    ) {
        // Before the listeners are handed to their tasks.
        let listeners = self.listeners();
        let board = self.board.clone();
        // Transports, the timer loop and the operator endpoints stop only after the drain, so
        // retransmissions, CANCEL and ACK keep working for the calls that finish meanwhile.
        let stop_transports = CancellationToken::new();
        let mut transports = JoinSet::new();
        let acl = self.acl.clone();
        let reject = self.config.sip.acl.on_deny == config::DenyAction::Reject;
        let max = self.config.sip.max_message_bytes;
        for socket in std::mem::take(&mut self.udp) {
            let (edge, acl, stop) = (self.edge.clone(), acl.clone(), stop_transports.clone());
            transports.spawn(supervise(
                &board,
                "udp listener",
                Role::Critical,
                stop_transports.clone(),
                move || {
                    infallible(sip::udp::serve(
                        socket.clone(),
                        edge.clone(),
                        acl.clone(),
                        reject,
                        max,
                        stop.clone(),
                    ))
                },
            ));
        }
        let options = Arc::new(sip::tcp::TcpOptions {
            max_size: max,
            max_connections: self.config.sip.max_connections,
            idle: Duration::from_secs(self.config.sip.tcp_idle_seconds),
        });
        let streams = std::mem::take(&mut self.tcp)
            .into_iter()
            .map(|l| ("tcp listener", l, None))
            .chain(
                std::mem::take(&mut self.tls)
                    .into_iter()
                    .map(|l| ("tls listener", l, self.acceptor.clone())),
            );
        self.edge.set_dialer(Arc::new(sip::tcp::Dialer {
            edge: Arc::downgrade(&self.edge),
            options: options.clone(),
            shutdown: stop_transports.clone(),
        }));
        for (name, listener, tls) in streams {
            let listener = Arc::new(listener);
            let (edge, acl, options, stop) = (
                self.edge.clone(),
                acl.clone(),
                options.clone(),
                stop_transports.clone(),
            );
            transports.spawn(supervise(
                &board,
                name,
                Role::Critical,
                stop_transports.clone(),
                move || {
                    infallible(sip::tcp::serve(
                        listener.clone(),
                        edge.clone(),
                        acl.clone(),
                        options.clone(),
                        tls.clone(),
                        stop.clone(),
                    ))
                },
            ));
        }
        let edge = self.edge.clone();
        let stop = stop_transports.clone();
        transports.spawn(supervise(
            &board,
            "sip timer loop",
            Role::Critical,
            stop_transports.clone(),
            move || infallible(loops::timer_loop(edge.clone(), stop.clone())),
        ));
        let forwarder_stats = self.forwarder.as_ref().map(Forwarder::stats);
        let ready = Arc::new(ready::Ready {
            board: board.clone(),
            edge: self.edge.clone(),
            outbox: self.outbox.clone(),
            forwarder: forwarder_stats.clone(),
            max_lag_seconds: self.config.ops.ready_max_lag_seconds,
            started: self.started,
        });
        if let Some(listener) = self.http.take() {
            let (registry, ready, stop) = (
                self.registry.clone(),
                ready.clone(),
                stop_transports.clone(),
            );
            transports.spawn(supervise(
                &board,
                "http endpoint",
                Role::Background,
                stop_transports.clone(),
                move || {
                    // Each run serves a duplicate of the one bound socket.
                    let listener = listener.try_clone().and_then(TcpListener::from_std);
                    let (registry, ready, stop) = (registry.clone(), ready.clone(), stop.clone());
                    async move {
                        ops::http::serve(listener?, registry, ready, stop).await?;
                        Ok(())
                    }
                },
            ));
        }
        if let Some(control) = self.control.take() {
            let handler: Arc<dyn ops::control::Handler> = Arc::new(status::Source {
                started: self.started,
                edge: self.edge.clone(),
                outbox: self.outbox.clone(),
                recorder: self.recorder.clone(),
                forwarder: forwarder_stats.clone(),
                board: board.clone(),
                ready: ready.clone(),
                listeners,
                feeds: self.config.cdr.feeds.clone(),
                subjects: self.subjects.clone(),
            });
            let (control, stop) = (Arc::new(control), stop_transports.clone());
            transports.spawn(supervise(
                &board,
                "control socket",
                Role::Background,
                stop_transports.clone(),
                move || infallible(control.clone().serve(handler.clone(), stop.clone())),
            ));
        }
        // Background work stops as soon as shutdown begins.
        let mut background = JoinSet::new();
        let (correlator, stop) = (self.correlator.clone(), shutdown.clone());
        background.spawn(supervise(
            &board,
            "correlation index saver",
            Role::Background,
            shutdown.clone(),
            move || infallible(loops::persist_loop(correlator.clone(), stop.clone())),
        ));
        let (housekeeping, stop) = (Housekeeping::new(&self), shutdown.clone());
        background.spawn(supervise(
            &board,
            "housekeeping",
            Role::Background,
            shutdown.clone(),
            move || infallible(loops::housekeeping_loop(housekeeping.clone(), stop.clone())),
        ));
        if !self.config.cdr.feeds.is_empty() {
            let (ingestor, feeds, stop) = (
                self.ingestor.clone(),
                self.config.cdr.feeds.clone(),
                shutdown.clone(),
            );
            background.spawn(supervise(
                &board,
                "cdr feeds",
                Role::Ready,
                shutdown.clone(),
                move || {
                    infallible(crate::cdr::service::run(
                        ingestor.clone(),
                        feeds.clone(),
                        stop.clone(),
                    ))
                },
            ));
        }
        // Like the forwarder, the evidence writer stops after the SIP edge, so the last calls'
        // disclosures get their lines.
        let stop_evidence = CancellationToken::new();
        let evidence_task = {
            let (outbox, stats, stop) = (
                self.outbox.clone(),
                self.evidence.clone(),
                stop_evidence.clone(),
            );
            let data_dir = self.config.data_dir.clone();
            tokio::spawn(supervise(
                &board,
                "evidence writer",
                Role::Background,
                stop_evidence.clone(),
                move || {
                    let (outbox, stats, stop, data_dir) = (
                        outbox.clone(),
                        stats.clone(),
                        stop.clone(),
                        data_dir.clone(),
                    );
                    async move {
                        evidence::run(outbox, &data_dir, stats, stop).await;
                        Ok(())
                    }
                },
            ))
        };
        // With Kafka, the forwarder deletes segments once delivered (and old enough); without it,
        // age decides. Either way a segment stays until the evidence writer has read it. The
        // forwarder stops last, after the SIP edge, so every event recorded before shutdown is
        // handed to Kafka (bounded by its flush timeout).
        let stop_forwarder = CancellationToken::new();
        let forwarder = match (self.forwarder.take(), &self.config.kafka) {
            (Some(first), Some(kafka)) => Some(tokio::spawn(supervise(
                &board,
                FORWARDER,
                Role::Ready,
                stop_forwarder.clone(),
                forwarder_runs(
                    first,
                    self.outbox.clone(),
                    kafka.clone(),
                    stop_forwarder.clone(),
                ),
            ))),
            (_, kafka) => {
                if kafka.is_none() {
                    let (outbox, hours, stop) = (
                        self.outbox.clone(),
                        self.config.outbox.retention_hours,
                        shutdown.clone(),
                    );
                    background.spawn(supervise(
                        &board,
                        "outbox retention",
                        Role::Background,
                        shutdown.clone(),
                        move || {
                            infallible(loops::retention_loop(outbox.clone(), hours, stop.clone()))
                        },
                    ));
                }
                None
            }
        };
        let alive = board.clone();
        let watchdog = tokio::spawn(ops::systemd::watchdog(move || alive.critical_running()));
        ops::systemd::ready();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(config) = reloads.recv() => match self.reload(&config) {
                    Ok(()) => info!(
                        campaigns = config.campaigns.len(),
                        numbers = config.numbers.pool.len(),
                        "Config reloaded: numbers, campaigns, announcements, trunk ACL, media address and log level apply from now on; other sections need a restart."
                    ),
                    Err(err) => warn!(error = %ops::Chain(&err), "Config reload refused; the running config stays."),
                },
            }
        }
        ops::systemd::stopping();
        self.edge.stop_taking_calls();
        info!("Shutting down: new calls get 503; calls in progress finish.");
        while background.join_next().await.is_some() {}
        let unfinished = self.edge.drain(Duration::from_secs(15)).await;
        if unfinished > 0 {
            warn!(
                unfinished,
                "Calls still in their announcement at shutdown were not finished."
            );
        }
        stop_transports.cancel();
        while transports.join_next().await.is_some() {}
        watchdog.abort();
        if let Err(err) = self.outbox.flush().await {
            warn!(error = %err, "Final outbox sync failed.");
        }
        stop_evidence.cancel();
        // One round of file work; the bound only guards against a hung disk.
        match tokio::time::timeout(Duration::from_secs(10), evidence_task).await {
            Ok(Ok(())) => info!(lines = self.evidence.lines(), "Evidence writer stopped."),
            Ok(Err(_)) => warn!("Evidence writer task failed."),
            Err(_) => warn!("Evidence writer did not stop within 10 s."),
        }
        stop_forwarder.cancel();
        if let Some(forwarder) = forwarder
            && forwarder.await.is_err()
        {
            warn!("Kafka forwarder task failed.");
        }
        if let Err(err) = self.correlator.persist() {
            warn!(error = %ops::Chain(&err), "Correlation index not saved.");
        }
        info!("Stopped.");
    }
}

/// The forwarder's runs for `supervise`: the one built at open first, then a new one (same
/// counters, same committed position) after each failure.
fn forwarder_runs(
    first: Forwarder,
    outbox: Outbox,
    kafka: crate::sink::Kafka,
    stop: CancellationToken,
) -> impl FnMut() -> futures::future::BoxFuture<'static, Result<(), TaskError>> + Send + 'static {
    let stats = first.stats();
    let mut first = Some(first);
    move || {
        let forwarder = first.take().map_or_else(
            || {
                Forwarder::with_stats(outbox.clone(), &kafka, stats.clone())
                    .map(|f| f.also_retain_for(evidence::READER))
            },
            Ok,
        );
        let stop = stop.clone();
        Box::pin(async move {
            let report = forwarder?.run(stop).await?;
            info!(
                acked = report.acked,
                backlog = report.backlog,
                flushed = report.flushed,
                "Kafka forwarder stopped."
            );
            Ok(())
        })
    }
}
