//! The async shell that drains the outbox into Kafka: reads batches from the reader `"kafka"`,
//! keeps up to `batch_events` sends in flight, commits the reader only over acknowledged
//! prefixes (see `window.rs`), backs off and resends after delivery errors, reports a stalled
//! backlog at a bounded rate, applies outbox retention, and on shutdown flushes with a bound.

use std::sync::Arc;
use std::time::Duration;

use futures::future::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;
use rdkafka::util::Timeout;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::producer::{self, Producer};
use super::window::Window;
use super::{Kafka, SinkError, Stats};
use crate::outbox::{Outbox, Position, Reader, Record, Retention};

/// The outbox reader name; retention keeps what it has not committed.
pub const READER: &str = "kafka";

/// Commit at most this often while records keep being acknowledged (each commit is an fsync).
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// Period of housekeeping: pending commits, the backlog gauge, the stall warning.
const TICK: Duration = Duration::from_millis(100);
const RETENTION_EVERY: Duration = Duration::from_secs(300);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Drains an outbox into a Kafka topic. One per outbox.
pub struct Forwarder {
    outbox: Outbox,
    kafka: Kafka,
    stats: Arc<Stats>,
    producer: Producer,
    /// The Schema Registry id payloads are framed with, once known.
    schema_id: Option<u32>,
    /// Readers whose committed positions retention respects: ours and the daemon's others.
    retain_for: Vec<&'static str>,
}

/// What a finished `run` did, for the shutdown log and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderReport {
    /// Sends handed to the producer in this run, resends included.
    pub published: u64,
    pub acked: u64,
    pub delivery_errors: u64,
    pub resends: u64,
    /// Every record below this position is delivered and committed.
    pub committed: Position,
    /// Outbox records not committed at the end (they go out on the next run).
    pub backlog: u64,
    /// The producer's queue was empty when it was dropped.
    pub flushed: bool,
}

/// A delivery report: the record's position, when it was handed over, and what the brokers said.
type Outcome = (
    Position,
    Instant,
    Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
);

/// Mutable state of one `run`.
struct Run {
    win: Window,
    /// Next position to deliver: everything below it is committed on disk.
    committed: Position,
    /// Highest acknowledged prefix not yet committed.
    to_commit: Option<Position>,
    last_commit: Instant,
    /// Last time a record was acknowledged or the window went from empty to busy.
    progress: Instant,
    last_warn: Option<Instant>,
    last_error: Option<RDKafkaErrorCode>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// The producer's queue refused a record; wait for a delivery before offering more.
    queue_full: bool,
    purged: bool,
}

enum Wake {
    Shutdown,
    Delivered(Outcome),
    Retry,
    Batch(Result<Vec<Record>, crate::outbox::Error>),
    Tick,
}

impl Forwarder {
    /// Checks the config and builds the producer (no network traffic yet).
    pub fn new(outbox: Outbox, kafka: &Kafka) -> Result<Forwarder, SinkError> {
        Self::with_stats(outbox, kafka, Arc::new(Stats::default()))
    }

    /// Like `new`, counting into `stats`: a forwarder started again after a failure keeps the
    /// counters (and their registration) of the one before.
    pub fn with_stats(
        outbox: Outbox,
        kafka: &Kafka,
        stats: Arc<Stats>,
    ) -> Result<Forwarder, SinkError> {
        let producer = producer::build(kafka, &stats)?;
        Ok(Forwarder {
            outbox,
            kafka: kafka.clone(),
            stats,
            producer,
            schema_id: None,
            retain_for: vec![READER],
        })
    }

    /// Retention also keeps what `reader` (another reader of this outbox) has not committed.
    #[must_use]
    pub fn also_retain_for(mut self, reader: &'static str) -> Self {
        self.retain_for.push(reader);
        self
    }

    /// The counters, for the metrics endpoint; live while `run` goes on.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Forwards until `shutdown` is cancelled or the outbox fails. Kafka being unreachable is
    /// not an error: records wait in the outbox and are retried. On the way out it waits up to
    /// `flush_timeout_ms` for in-flight records, commits what was acknowledged and drops the
    /// producer.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<ForwarderReport, SinkError> {
        let mut reader = self.outbox.reader(READER)?;
        let start = Instant::now();
        let mut run = Run {
            win: Window::new(self.kafka.batch_events),
            committed: reader.position(),
            to_commit: None,
            last_commit: start,
            progress: start,
            last_warn: None,
            last_error: None,
            backoff: BACKOFF_MIN,
            retry_at: None,
            queue_full: false,
            purged: false,
        };
        let before = Totals::of(&self.stats);
        let mut flight = FuturesUnordered::new();
        let pumped = if self.resolve_schema(&shutdown).await {
            self.pump(&mut reader, &mut run, &mut flight, &shutdown)
                .await
        } else {
            Ok(())
        };
        let flushed = self.drain(&mut run, &mut flight).await;
        let committed = self.commit(&mut reader, &mut run).await;
        let producer = self.producer;
        // Dropping purges what is still queued and waits up to 500 ms: not on a runtime thread.
        tokio::task::spawn_blocking(move || drop(producer))
            .await
            .map_err(|_| SinkError::Background)?;
        pumped?;
        committed?;
        let after = Totals::of(&self.stats);
        Ok(ForwarderReport {
            published: after.published - before.published,
            acked: after.acked - before.acked,
            delivery_errors: after.delivery_errors - before.delivery_errors,
            resends: after.resends - before.resends,
            committed: run.committed,
            backlog: self.stats.backlog(),
            flushed: flushed && run.win.in_flight() == 0,
        })
    }

    /// With Schema Registry framing, the schema id before anything is sent (every record of a
    /// topic is framed alike). The registry being unreachable is retried with backoff while
    /// events wait in the outbox; `false` when shutdown came first.
    async fn resolve_schema(&mut self, shutdown: &CancellationToken) -> bool {
        let Some(registry) = self.kafka.schema_registry.clone() else {
            return true;
        };
        let mut backoff = BACKOFF_MIN;
        loop {
            let (r, topic) = (registry.clone(), self.kafka.topic.clone());
            match tokio::task::spawn_blocking(move || r.schema_id(&topic)).await {
                Ok(Ok(id)) => {
                    tracing::info!(schema_id = id, "Schema registered; payloads are framed.");
                    self.schema_id = Some(id);
                    return true;
                }
                Ok(Err(err)) => {
                    if let Some(suppressed) = self.stats.count_registry_error() {
                        tracing::warn!(error = %crate::ops::Chain(&err), suppressed, "Schema registry not reached; events wait in the outbox.");
                    }
                }
                Err(_) => {
                    let _ = self.stats.count_registry_error();
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// The main loop; returns on shutdown (Ok) or an outbox failure.
    async fn pump(
        &mut self,
        reader: &mut Reader,
        run: &mut Run,
        flight: &mut FuturesUnordered<futures::future::BoxFuture<'static, Outcome>>,
        shutdown: &CancellationToken,
    ) -> Result<(), SinkError> {
        let cap = self.kafka.batch_events.max(1);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_retention = Instant::now();
        loop {
            if run.retry_at.is_none() && !run.queue_full {
                self.fill(run, flight);
            }
            // Read in steps of at least a quarter window, keeping the producer's queue fed.
            let room = run.win.room();
            let read_more = room > 0 && room >= cap / 4 && !run.win.failed();
            let retry_at = run.retry_at.unwrap_or_else(Instant::now);
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Shutdown,
                Some(d) = flight.next(), if !flight.is_empty() => Wake::Delivered(d),
                () = tokio::time::sleep_until(retry_at), if run.retry_at.is_some() => Wake::Retry,
                b = reader.next_batch(room), if read_more => Wake::Batch(b),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Shutdown => return Ok(()),
                Wake::Delivered(d) => {
                    self.delivered(run, d);
                    while let Some(Some(d)) = flight.next().now_or_never() {
                        self.delivered(run, d);
                    }
                    self.settle(run);
                }
                Wake::Retry => self.retry(run).await,
                Wake::Batch(batch) => {
                    let batch = batch?;
                    if run.win.is_empty() && !batch.is_empty() {
                        run.progress = Instant::now();
                    }
                    for rec in batch {
                        run.win.push(rec);
                    }
                }
                Wake::Tick => {
                    self.update_backlog(run);
                    self.warn_if_stalled(run);
                    if Instant::now() >= next_retention {
                        next_retention = Instant::now() + RETENTION_EVERY;
                        self.retention().await;
                    }
                }
            }
            if run.to_commit.is_some() && run.last_commit.elapsed() >= COMMIT_EVERY {
                self.commit(reader, run).await?;
            }
        }
    }

    /// Offers records to the producer until the window or the producer's queue is full.
    fn fill(
        &self,
        run: &mut Run,
        flight: &mut FuturesUnordered<futures::future::BoxFuture<'static, Outcome>>,
    ) {
        while let Some(next) = run.win.next() {
            let pos = next.rec.position;
            let shape = producer::Shape {
                topic: &self.kafka.topic,
                cloudevents_source: self
                    .kafka
                    .cloudevents
                    .then_some(self.kafka.cloudevents_source.as_str()),
                schema_id: self.schema_id,
            };
            match producer::send(&self.producer, &shape, next.rec, &self.stats) {
                Ok(fut) => {
                    self.stats.count_published(next.resend);
                    run.win.sent();
                    let sent = Instant::now();
                    flight.push(fut.map(move |r| (pos, sent, r)).boxed());
                }
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    run.queue_full = true;
                    return;
                }
                Err(e) => {
                    // Refused locally (e.g. too large, fatal producer state): treat it as a
                    // failed delivery so it is retried after the backoff, never skipped.
                    self.stats.count_delivery_error();
                    run.last_error = e.rdkafka_error_code();
                    run.win.sent();
                    run.win.fail(pos);
                    self.settle(run);
                    return;
                }
            }
        }
    }

    fn delivered(&self, run: &mut Run, (pos, sent, outcome): Outcome) {
        run.queue_full = false;
        match outcome {
            Ok(Ok(_)) => {
                self.stats.count_acked(sent.elapsed());
                run.win.ack(pos);
                run.progress = Instant::now();
                run.backoff = BACKOFF_MIN;
                if run.last_warn.take().is_some() {
                    tracing::info!("Kafka deliveries resumed.");
                }
            }
            Ok(Err((e, _))) => {
                self.stats.count_delivery_error();
                run.last_error = e.rdkafka_error_code();
                run.win.fail(pos);
            }
            Err(_) => {
                self.stats.count_delivery_error();
                run.win.fail(pos);
            }
        }
    }

    /// After a batch of delivery reports: move the commit point, and after a failure make
    /// sure every in-flight send finishes, then schedule the resend.
    fn settle(&self, run: &mut Run) {
        if let Some(p) = run.win.release() {
            run.to_commit = Some(p);
        }
        if !run.win.failed() {
            return;
        }
        if !run.purged && self.producer.client().fatal_error().is_some() {
            // A fatal producer never reports its queued records otherwise; purging completes
            // their futures with an error so the window can drain and rewind.
            run.purged = true;
            self.producer
                .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        }
        if run.win.in_flight() == 0 && run.retry_at.is_none() {
            run.retry_at = Some(Instant::now() + run.backoff);
            run.backoff = (run.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// The backoff after a failure ran out: rebuild a dead producer, then resend.
    async fn retry(&mut self, run: &mut Run) {
        run.retry_at = None;
        if self.producer.client().fatal_error().is_some() {
            match producer::build(&self.kafka, &self.stats) {
                Ok(fresh) => {
                    let old = std::mem::replace(&mut self.producer, fresh);
                    run.purged = false;
                    if let Some(suppressed) = self.stats.count_producer_restart() {
                        tracing::warn!(
                            code = ?run.last_error,
                            suppressed,
                            "Kafka producer failed fatally and was rebuilt."
                        );
                    }
                    let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::ops::Chain(&e), "Kafka producer could not be rebuilt.");
                    run.retry_at = Some(Instant::now() + run.backoff);
                    run.backoff = (run.backoff * 2).min(BACKOFF_MAX);
                    return;
                }
            }
        }
        run.win.rewind();
    }

    async fn commit(&self, reader: &mut Reader, run: &mut Run) -> Result<(), SinkError> {
        if let Some(p) = run.to_commit.take() {
            reader.commit(p).await?;
            run.committed = p.next();
            run.last_commit = Instant::now();
            self.update_backlog(run);
        }
        Ok(())
    }

    fn update_backlog(&self, run: &Run) {
        if let Ok(end) = self.outbox.end() {
            self.stats
                .set_backlog(end.0.saturating_sub(run.committed.0));
        }
    }

    /// One warning per `backlog_warn_interval_seconds` at most while nothing is acknowledged.
    fn warn_if_stalled(&self, run: &mut Run) {
        let every = self.kafka.backlog_warn_interval();
        let now = Instant::now();
        let stalled = !run.win.is_empty() && now.duration_since(run.progress) >= every;
        let due = run.last_warn.is_none_or(|t| now.duration_since(t) >= every);
        if stalled && due {
            run.last_warn = Some(now);
            tracing::warn!(
                backlog = self.stats.backlog(),
                in_flight = run.win.in_flight(),
                delivery_errors = self.stats.delivery_errors(),
                client_errors = self.stats.client_errors(),
                last_error = ?run.last_error,
                "Kafka deliveries are stalled; events wait in the outbox."
            );
        }
    }

    async fn retention(&self) {
        let outbox = self.outbox.clone();
        let min_age = self.kafka.retention_age();
        let readers = self.retain_for.clone();
        let done = tokio::task::spawn_blocking(move || {
            outbox.apply_retention(&Retention {
                min_age,
                require_readers: &readers,
            })
        })
        .await;
        if !matches!(done, Ok(Ok(_)))
            && let Some(suppressed) = self.stats.count_retention_error()
        {
            tracing::warn!(suppressed, "Outbox retention after Kafka delivery failed.");
        }
    }

    /// Shutdown: waits up to the flush timeout for in-flight records while librdkafka flushes.
    /// Returns whether the flush finished in time.
    async fn drain(
        &self,
        run: &mut Run,
        flight: &mut FuturesUnordered<futures::future::BoxFuture<'static, Outcome>>,
    ) -> bool {
        let timeout = self.kafka.flush_timeout();
        let deadline = Instant::now() + timeout;
        let producer = self.producer.clone();
        let flush = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)));
        while !flight.is_empty() {
            match tokio::time::timeout_at(deadline, flight.next()).await {
                Ok(Some(d)) => self.delivered(run, d),
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(p) = run.win.release() {
            run.to_commit = Some(p);
        }
        let flushed = matches!(flush.await, Ok(Ok(())));
        if !flushed {
            tracing::warn!(
                in_flight = run.win.in_flight(),
                "Kafka flush timed out at shutdown; unacknowledged events stay in the outbox."
            );
        }
        flushed
    }
}

/// Counter snapshot, to report one run's share.
struct Totals {
    published: u64,
    acked: u64,
    delivery_errors: u64,
    resends: u64,
}

impl Totals {
    fn of(s: &Stats) -> Totals {
        Totals {
            published: s.published(),
            acked: s.acked(),
            delivery_errors: s.delivery_errors(),
            resends: s.resends(),
        }
    }
}
