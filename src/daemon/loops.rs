//! The daemon's background loops: the SIP timer tick, saving the correlation index, the hourly
//! storage-limitation round, and outbox retention without Kafka. Each runs until its stop token
//! is cancelled, under supervision (`supervise`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Daemon;
use crate::call::correlate::Correlator;
use crate::call::{Keyring, Recorder};
use crate::cdr::service::Ingestor;
use crate::evidence;
use crate::ops::{self, Occurrence};
use crate::outbox::{self, Outbox};
use crate::sip::edge::Edge;

pub(super) async fn timer_loop(edge: Arc<Edge>, shutdown: CancellationToken) {
    // Timer G's smallest step is T1 (500 ms); a 10 ms tick keeps retransmissions within 2% of it.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            now = tick.tick() => { edge.tick(now).await; }
        }
    }
}

/// Saves the correlation index every minute, so a crash loses at most a minute of joins.
pub(super) async fn persist_loop(correlator: Arc<Correlator>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let c = correlator.clone();
                if let Ok(Err(err)) = tokio::task::spawn_blocking(move || c.persist()).await {
                    warn!(error = %ops::Chain(&err), "Correlation index not saved.");
                }
            }
        }
    }
}

/// Shreds pseudonym keys beyond `keep`, at start-up and hourly; a failure is logged and counted.
pub(super) fn prune_keys(keyring: &Keyring, keep: usize, failures: &Counter) {
    match keyring.prune(keep) {
        Ok(shredded) if !shredded.is_empty() => {
            info!(
                shredded = shredded.len(),
                "Expired pseudonym keys shredded."
            );
        }
        Ok(_) => {}
        Err(err) => {
            // Hourly: every failure is logged.
            static FAILED: Occurrence = Occurrence::new(Duration::ZERO);
            if let Some(suppressed) = FAILED.record(failures) {
                warn!(error = %crate::ops::Chain(&err), suppressed, "Expired pseudonym keys could not be shredded.");
            }
        }
    }
}

/// What the hourly storage-limitation round touches.
#[derive(Clone)]
pub(super) struct Housekeeping {
    key_failures: Counter,
    recorder: Arc<Recorder>,
    ingestor: Arc<Ingestor>,
    keep_keys: usize,
    quarantine_days: u64,
    evidence: evidence::Layout,
    evidence_days: u32,
}

impl Housekeeping {
    pub(super) fn new(daemon: &Daemon) -> Self {
        let c = &daemon.config;
        Self {
            key_failures: daemon.calls.stats().key_failures.clone(),
            recorder: daemon.recorder.clone(),
            ingestor: daemon.ingestor.clone(),
            keep_keys: c.privacy.keep_keys,
            quarantine_days: c.cdr.quarantine_days,
            evidence: evidence::Layout::new(&c.data_dir),
            evidence_days: c.privacy.evidence_retention_days,
        }
    }

    /// One round; blocking (directory listings, small files, fsyncs).
    fn round(&self) {
        prune_keys(self.recorder.keyring(), self.keep_keys, &self.key_failures);
        // Raw files first: a kept spool file goes only while its checkpoint lasts.
        self.ingestor.purge_raw();
        self.ingestor.purge(self.quarantine_days);
        let now = chrono::Utc::now();
        let purged = self.recorder.suppression().map(|list| list.purge(now));
        if let Some(Err(err)) = purged {
            warn!(error = %crate::ops::Chain(&err), "Expired suppression entries could not be purged.");
        }
        let keep_from = now.date_naive() - chrono::Days::new(u64::from(self.evidence_days));
        if let Err(err) = self.evidence.purge(keep_from) {
            warn!(error = %err, "Expired disclosure evidence could not be deleted.");
        }
    }
}

/// Storage limitation on a schedule: pseudonym keys beyond `keep_keys` are shredded; raw CDR
/// files, CDR quarantine rows, suppression entries and evidence days past their retention
/// purged; at start and hourly (cheap: a directory listing or a small file each).
pub(super) async fn housekeeping_loop(housekeeping: Housekeeping, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let round = housekeeping.clone();
                let _ = tokio::task::spawn_blocking(move || round.round()).await;
            }
        }
    }
}

/// Outbox-only mode: segments last written more than `hours` ago go, once the evidence writer
/// has read them.
pub(super) async fn retention_loop(outbox: Outbox, hours: u64, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let outbox = outbox.clone();
                let retention = outbox::Retention {
                    min_age: Duration::from_secs(hours * 3600),
                    require_readers: &[evidence::READER],
                };
                match tokio::task::spawn_blocking(move || outbox.apply_retention(&retention)).await {
                    Ok(Ok(freed)) if freed > 0 => info!(freed_bytes = freed, "Outbox retention applied."),
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => warn!(error = %err, "Outbox retention failed."),
                    Err(_) => warn!("Outbox retention task failed."),
                }
            }
        }
    }
}
